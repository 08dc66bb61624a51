"""Structured JSON logs and CloudWatch embedded-metric-format (EMF) records.

Lambda ships every stdout line to CloudWatch Logs, and CloudWatch turns EMF
lines into metrics without an API call. Powertools' Logger and Metrics do the
same but cost ~80 ms of imports (measured, docs/benchmarks.md) on a cold start
whose whole budget is 200 ms; what the Lambdas need fits in this module.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from tlops.contract import names

NAMESPACE = names.METRIC_NAMESPACE


class Telemetry:
    def __init__(self, service: str, *, stream: TextIO | None = None, namespace: str = NAMESPACE):
        self.service = service
        self.namespace = namespace
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def _emit(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        self.stream.flush()

    def log(self, level: str, message: str, **fields: Any) -> None:
        self._emit(
            {
                "level": level,
                "message": message,
                "service": self.service,
                "timestamp": round(time.time() * 1000),
                **fields,
            }
        )

    def metric(self, name: str, value: float = 1, unit: str = "Count", **dimensions: str) -> None:
        self._emit(
            {
                "_aws": {
                    "Timestamp": round(time.time() * 1000),
                    "CloudWatchMetrics": [
                        {
                            "Namespace": self.namespace,
                            "Dimensions": [sorted(dimensions)],
                            "Metrics": [{"Name": name, "Unit": unit}],
                        }
                    ],
                },
                name: value,
                "service": self.service,
                **dimensions,
            }
        )
