"""Lambda entry point for the router; the logic lives in tlops.router."""

from tlops.router import lambda_handler

__all__ = ["lambda_handler"]
