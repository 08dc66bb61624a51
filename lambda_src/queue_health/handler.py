"""Lambda entry point for /queue-health; the logic lives in tlops.queue_health."""

from tlops.queue_health import lambda_handler

__all__ = ["lambda_handler"]
