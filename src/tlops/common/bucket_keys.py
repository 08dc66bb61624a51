"""Listing a bucket's keys, bounded: what the router counts held jobs with, and the node finds
them with (s3:ListBucket, with an `s3:prefix` condition in their policies)."""

from __future__ import annotations

from tlops.common.control_bucket import BucketUnavailable, ControlBucket


def keys(bucket: ControlBucket, prefix: str, *, most: int) -> list[str]:
    """Up to `most` keys under `prefix`, in S3's (lexical) order: one ListObjectsV2 call
    when `most` is 1000 or less, so a bounded caller knows what it costs."""
    from botocore.exceptions import BotoCoreError, ClientError

    found: list[str] = []
    token = None
    for _ in range(max(1, -(-most // 1000))):
        kwargs = {
            "Bucket": bucket.bucket,
            "Prefix": prefix,
            "MaxKeys": min(1000, most - len(found)),
        }
        if token:
            kwargs["ContinuationToken"] = token
        try:
            page = bucket.s3.list_objects_v2(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise BucketUnavailable(f"s3://{bucket.bucket}/{prefix}: {exc}") from exc
        found += [item["Key"] for item in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token or len(found) >= most:
            break
    return found[:most]
