"""Lambda entry point for the daily cost summary; the logic lives in tlops.guard.summary."""

from tlops.guard.summary import lambda_handler

__all__ = ["lambda_handler"]
