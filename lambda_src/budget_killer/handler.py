"""Lambda entry point for the budget killer; the logic lives in tlops.guard.killer."""

from tlops.guard.killer import lambda_handler

__all__ = ["lambda_handler"]
