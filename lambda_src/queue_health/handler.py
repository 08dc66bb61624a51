"""Lambda entry point for /queue-health; the logic lives in tlops.edge.queue_health."""

from tlops.edge.queue_health import lambda_handler

__all__ = ["lambda_handler"]
