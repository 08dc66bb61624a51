# Part of tl_bucket_notification (plugins/modules/tl_bucket_notification.py). Apache-2.0.
"""One Lambda function configuration, found by its Id, in an S3 bucket's notification
configuration; every other configuration of the bucket is sent back as it was read.

PutBucketNotificationConfiguration replaces the bucket's whole notification configuration with
the one in the request
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketNotificationConfiguration.html).
So each write starts from what GetBucketNotificationConfiguration answered and changes one entry
of LambdaFunctionConfigurations: the topic, queue and other Lambda configurations and
EventBridgeConfiguration go back untouched, in their order.

A notification configuration has no ARN and no tags: its Id, unique within the bucket, is all
there is to find it by. Nothing here checks a Project tag; the bucket is the project's, and
state=absent takes out only the entry with that Id.
"""

from __future__ import annotations

import difflib
import re

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    ClientError,
    Failure,
    is_not_found,
)

# The event types S3 notifies SQS, SNS and Lambda of, from the table "Supported event types for
# SQS, SNS, and Lambda" (https://docs.aws.amazon.com/AmazonS3/latest/userguide/
# notification-how-to-event-types-and-destinations.html#supported-notification-event-types).
# s3:TestEvent is left out: S3 sends it by itself and a configuration cannot ask for it.
EVENTS = frozenset(
    {
        "s3:ObjectCreated:*",
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
        "s3:ObjectRemoved:*",
        "s3:ObjectRemoved:Delete",
        "s3:ObjectRemoved:DeleteMarkerCreated",
        "s3:ObjectRestore:*",
        "s3:ObjectRestore:Post",
        "s3:ObjectRestore:Completed",
        "s3:ObjectRestore:Delete",
        "s3:ReducedRedundancyLostObject",
        "s3:Replication:*",
        "s3:Replication:OperationFailedReplication",
        "s3:Replication:OperationMissedThreshold",
        "s3:Replication:OperationReplicatedAfterThreshold",
        "s3:Replication:OperationNotTracked",
        "s3:LifecycleExpiration:*",
        "s3:LifecycleExpiration:Delete",
        "s3:LifecycleExpiration:DeleteMarkerCreated",
        "s3:LifecycleTransition",
        "s3:IntelligentTiering",
        "s3:ObjectTagging:*",
        "s3:ObjectTagging:Put",
        "s3:ObjectTagging:Delete",
        "s3:ObjectAcl:Put",
    }
)
DEFAULT_EVENTS = ("s3:ObjectCreated:*",)

# General purpose bucket names: 3 to 63 lower-case letters, digits, dots and hyphens, starting
# and ending with a letter or digit
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# A configuration's Id is "an optional unique identifier for configurations in a notification
# configuration" (https://docs.aws.amazon.com/AmazonS3/latest/API/
# API_LambdaFunctionConfiguration.html); the reference sets no length. The module asks for one
# (it is how the entry is found) and keeps it to 1-255 printable characters, its own bound.
MAX_ID = 255

# A Lambda function's ARN, optionally qualified by an alias or a version: the function name is
# 1-64 letters, digits, hyphens or underscores
# (https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html), an alias name 1-128
# of the same (https://docs.aws.amazon.com/lambda/latest/api/API_CreateAlias.html), a version
# digits; the partition and region as in FunctionArn's pattern
# (https://docs.aws.amazon.com/lambda/latest/api/API_FunctionConfiguration.html).
_FUNCTION_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(?:-gov)?-[a-z]+-\d:\d{12}:function:[A-Za-z0-9_-]{1,64}"
    r"(?::[A-Za-z0-9_-]{1,128})?$"
)
FUNCTION_EXAMPLE = "arn:aws:lambda:eu-west-1:123456789012:function:tinyllama-control:prod"

# A filter rule's name is `prefix` or `suffix` (Valid Values: prefix | suffix) and its length is
# at most 1,024 characters (https://docs.aws.amazon.com/AmazonS3/latest/API/API_FilterRule.html).
MAX_KEY_PART = 1024

_LAMBDA = "LambdaFunctionConfigurations"
_OTHERS = {"TopicConfigurations": "an SNS topic", "QueueConfigurations": "an SQS queue"}


def check(params):
    """What both states need (the bucket, the id), and for present the rest."""
    bucket, ident = params["bucket"], params["id"]
    if not _BUCKET.match(bucket or ""):
        raise Failure(
            f"bucket {bucket!r} is not an S3 bucket name: 3 to 63 lower-case letters, digits, "
            "dots and hyphens, e.g. tinyllama-control-123456789012"
        )
    if not 1 <= len(ident or "") <= MAX_ID or not ident.isprintable():
        raise Failure(
            f"id {ident!r} must be 1 to {MAX_ID} printable characters (e.g. control-requests): "
            "it names the one configuration this task manages in the bucket"
        )
    if params["state"] == "present":
        desired(params)


def desired(params):
    """The LambdaFunctionConfiguration state=present asks for."""
    arn = params["function_arn"]
    if not arn:
        raise Failure(
            f"function_arn is required when state=present: the function's or its alias's ARN, "
            f"e.g. {FUNCTION_EXAMPLE}"
        )
    if not _FUNCTION_ARN.match(arn):
        raise Failure(
            f"function_arn {arn!r} is not a Lambda function's ARN (optionally with an alias or "
            f"version), e.g. {FUNCTION_EXAMPLE}"
        )
    configuration = {"Id": params["id"], "LambdaFunctionArn": arn, "Events": _events(params)}
    # A rule only for what is given: an empty value filters nothing, and the stand-in refuses
    # a rule without a value.
    rules = []
    for name in ("prefix", "suffix"):
        value = params[name] or ""
        if len(value) > MAX_KEY_PART:
            raise Failure(f"{name} is {len(value)} characters, over S3's {MAX_KEY_PART}")
        if value:
            rules.append({"Name": name, "Value": value})
    if rules:
        configuration["Filter"] = {"Key": {"FilterRules": rules}}
    return configuration


def _events(params):
    events = params["events"]
    if not events:
        raise Failure(
            "events needs at least one event type when state=present, e.g. [s3:ObjectCreated:*]"
        )
    for event in events:
        if event not in EVENTS:
            near = difflib.get_close_matches(event, EVENTS, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise Failure(
                f"events: {event!r} is not an event type S3 notifies Lambda of.{hint} The list: "
                "https://docs.aws.amazon.com/AmazonS3/latest/userguide/"
                "notification-how-to-event-types-and-destinations.html"
            )
    return sorted(set(events))


def read(client, bucket):
    """The bucket's notification configuration as GetBucketNotificationConfiguration answers
    it; None when the bucket does not exist."""
    try:
        answer = client.get_bucket_notification_configuration(Bucket=bucket, aws_retry=True)
    except ClientError as exc:
        if is_not_found(exc, "NoSuchBucket"):
            return None
        raise
    answer.pop("ResponseMetadata", None)
    return answer


def view(configuration):
    """One Lambda configuration, snake_case, as the diff shows and compares it; None for none.

    Events are a sorted set; filter rule names are read case-insensitively (AWS accepts and may
    answer Prefix and Suffix) and a rule with an empty value filters nothing, so reads as none.
    """
    if configuration is None:
        return None
    rules = ((configuration.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
    values = {rule.get("Name", "").lower(): rule.get("Value") or "" for rule in rules}
    return {
        "id": configuration.get("Id"),
        "function_arn": configuration.get("LambdaFunctionArn"),
        "events": sorted(set(configuration.get("Events") or [])),
        "prefix": values.get("prefix", ""),
        "suffix": values.get("suffix", ""),
    }


def held_by_other(notification, ident):
    """What else than a Lambda configuration holds `ident` in the bucket, or None."""
    for key, what in _OTHERS.items():
        if any(c.get("Id") == ident for c in notification.get(key) or []):
            return what
    return None


def lambda_configuration(notification, ident):
    matches = [c for c in notification.get(_LAMBDA) or [] if c.get("Id") == ident]
    return matches[0] if matches else None


def with_configuration(notification, ident, configuration):
    """The whole notification configuration to put: `notification` with the Lambda entry
    `ident` replaced in its place, added at the end, or (configuration None) left out."""
    out = dict(notification)
    ours, placed = [], False
    for entry in notification.get(_LAMBDA) or []:
        if entry.get("Id") != ident:
            ours.append(entry)
        elif configuration is not None:
            ours.append(configuration)
            placed = True
    if configuration is not None and not placed:
        ours.append(configuration)
    out[_LAMBDA] = ours
    # Empty lists say nothing; EventBridgeConfiguration is an empty dict when on, and is kept.
    return {key: value for key, value in out.items() if value != []}


def put(client, bucket, notification):
    client.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration=notification, aws_retry=True
    )


def _outcome(params, changed, before, after):
    return dict(changed=changed, before=before, after=after, bucket=params["bucket"],
                configuration=after)  # fmt: skip


def ensure_present(client, params, check_mode, _warn):
    bucket, ident = params["bucket"], params["id"]
    wanted = desired(params)
    notification = read(client, bucket)
    if notification is None:
        raise Failure(
            f"bucket {bucket!r} does not exist (or is in no region this endpoint serves): "
            "create it first (amazon.aws.s3_bucket), then configure its notification"
        )
    other = held_by_other(notification, ident)
    if other is not None:
        raise Failure(
            f"id {ident!r} already names {other} configuration of bucket {bucket}, which this "
            "module leaves alone: give the Lambda configuration another id"
        )
    before, after = view(lambda_configuration(notification, ident)), view(wanted)
    changed = before != after
    if changed and not check_mode:
        put(client, bucket, with_configuration(notification, ident, wanted))
    return _outcome(params, changed, before, after)


def ensure_absent(client, params, check_mode, warn):
    """Takes the Lambda configuration `id` out of the bucket's; a bucket that is gone has none."""
    bucket, ident = params["bucket"], params["id"]
    notification = read(client, bucket)
    if notification is None:
        return _outcome(params, False, None, None)
    other = held_by_other(notification, ident)
    if other is not None:
        warn(
            f"id {ident!r} of bucket {bucket} names {other} configuration, not a Lambda one: "
            "left alone"
        )
        return _outcome(params, False, None, None)
    current = lambda_configuration(notification, ident)
    if current is None:
        return _outcome(params, False, None, None)
    if not check_mode:
        put(client, bucket, with_configuration(notification, ident, None))
    return _outcome(params, True, view(current), None)
