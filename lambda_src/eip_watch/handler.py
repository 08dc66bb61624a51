"""Lambda entry point for eip_watch; the logic lives in tlops.edge.eip_watch."""

from tlops.edge.eip_watch import lambda_handler

__all__ = ["lambda_handler"]
