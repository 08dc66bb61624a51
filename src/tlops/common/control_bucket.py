"""Reading and writing the control bucket (its layout: `tlops.contract.control`).

One small class over an S3 client, shared by the router and the queue probe (which
ask control), control itself (which records the state), the node (which reads the
queue's address) and the CLI. Every call is one S3 request, so a caller with a
deadline bounds it with its client's timeouts. It reads and writes objects only:
listing (`keys`, below) and deleting (the node's, tlops.node.held) live apart, so that
a component's IAM policy needs only what it calls (tests/checks/test_calls_declared.py
reads the imports).
"""

from __future__ import annotations

import json
from typing import Any

from tlops.contract import control


class BucketUnavailable(Exception):
    """S3 refused or did not answer; the message holds its words (for the log)."""


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class ControlBucket:
    def __init__(self, s3: Any, bucket: str):
        self.s3, self.bucket = s3, bucket

    def get_json(self, key: str) -> dict[str, Any] | None:
        """The object at `key` as a JSON object; None when there is none (or it is not one)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise BucketUnavailable(f"s3://{self.bucket}/{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise BucketUnavailable(f"s3://{self.bucket}/{key}: {exc}") from exc
        data = control.parse_state(body)
        return data or None

    def put_json(self, key: str, data: dict[str, Any], *, only_if_absent: bool = False) -> bool:
        """Write `data` at `key`; with `only_if_absent` only when no object is there (S3's
        conditional write, `If-None-Match: *`). False when one was: nothing was written."""
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"IfNoneMatch": "*"} if only_if_absent else {}
        body = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **extra
            )
        except ClientError as exc:
            # 412: the object exists; 409: another conditional write of it is under way.
            if only_if_absent and _code(exc) in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return False
            raise BucketUnavailable(f"s3://{self.bucket}/{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise BucketUnavailable(f"s3://{self.bucket}/{key}: {exc}") from exc
        return True

    # --- what the parts ask of it --------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The recorded state; {} before control has recorded any."""
        return self.get_json(control.STATE_KEY) or {}

    def ask(self, action: control.Action, name: str, *, by: str, now_ms: int, **args: Any) -> bool:
        """Write a request for control, once per name; False when one by that name exists."""
        body = json.loads(control.request_body(action, by=by, at_ms=now_ms, **args))
        return self.put_json(control.request_key(action, name), body, only_if_absent=True)
