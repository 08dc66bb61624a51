"""Lambda entry point for the router; the logic lives in tlops.edge.router."""

from tlops.edge.router import lambda_handler

__all__ = ["lambda_handler"]
