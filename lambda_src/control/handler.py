"""Lambda entry point for control; the logic lives in tlops.control.actions."""

from tlops.control.actions import lambda_handler

__all__ = ["lambda_handler"]
