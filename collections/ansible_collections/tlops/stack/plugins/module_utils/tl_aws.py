# Shared by the tl_* modules in plugins/modules/. Apache-2.0.
"""What every tl_* module does the same way: connect, retry, wait, diff, fail.

The connection (region, endpoint_url for the local stand-in, credentials) and
the throttling retries come from amazon.aws' own module_utils, so the custom
modules honour exactly the options and environment variables the collection's
modules do. What is added here is small and shared:

- `Failure`: the domain exception a module's functions raise; `run()` turns it
  (and any botocore error) into a `fail_json` whose message says what to fix.
- `wait_until()`: a bounded poll, for states no boto3 waiter covers.
- `unsupported()`: recognises an API the endpoint does not implement (the
  local stand-in lacks a few), so a module can warn and carry on knowingly.
- `tag_changes()`: the amazon.aws comparison; `tags_after()`: the tags it leads to;
  `apply_tags()`: writes it through a service's own tag and untag calls;
  `carries()`: whether a resource's tags include the ones given.
- `pages()`: every item of a paginated call (NextToken or Marker), bounded.
- `result()`: the exit dictionary with `before`/`after` diff when asked.

What the local stand-in lacks, and how a module copes, is in `tl_standin`.
"""

from __future__ import annotations

import time

try:
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError
except ImportError:  # AnsibleAWSModule reports the missing SDK itself
    BotoCoreError = ClientError = ResponseParserError = Exception

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

__all__ = [
    "AWSRetry",
    "AnsibleAWSModule",
    "BotoCoreError",
    "ClientError",
    "Failure",
    "ResponseParserError",
    "apply_tags",
    "carries",
    "is_boto3_error_code",
    "is_not_found",
    "pages",
    "refuse_untagged_delete",
    "result",
    "retrying_client",
    "run",
    "tag_changes",
    "tags_after",
    "unsupported",
    "wait_until",
]

# Throttling and transient errors are retried with jittered backoff, bounded in total.
# amazon.aws' list lacks the code some services throttle with (Budgets, Cognito, Lambda).
_RETRY = AWSRetry.jittered_backoff(
    retries=8,
    delay=1,
    backoff=2.0,
    max_delay=20,
    catch_extra_error_codes=["ThrottlingException", "TooManyRequestsException", "SlowDown"],
)


def refuse_untagged_delete(params):
    """state=absent deletes only a resource carrying the tags given: the Project tag at least,
    so that no resource is ever deleted by its name alone (names are not identities)."""
    if params.get("state") == "absent" and not (params.get("tags") or {}).get("Project"):
        raise Failure(
            "state=absent needs tags with at least Project (e.g. tags: {Project: tinyllama}): "
            "only a resource that carries them is deleted, never one found by name alone"
        )


class Failure(Exception):
    """A failure the operator must act on; `message` says what was wrong and what to do."""

    def __init__(self, message, exception=None):
        super().__init__(message)
        self.message = message
        self.exception = exception


def retrying_client(module, service):
    """A boto3 client honouring the module's connection options; pass aws_retry=True to calls."""
    return module.client(service, retry_decorator=_RETRY)


def is_not_found(exc, *codes):
    """Whether a ClientError says the resource does not exist (common codes plus `codes`)."""
    known = ("ResourceNotFoundException", "NotFoundException", "NotFound", "404", *codes)
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in known


def unsupported(exc):
    """Whether the endpoint does not implement the call.

    The local stand-in's server turns its NotImplementedError into a bare HTML
    "500 Internal Server Error" page: botocore reports it as error code "500" for
    JSON services and cannot parse it at all for XML ones (ResponseParserError).
    An operation it has no route for at all gets its web front's HTML 404 page.
    AWS answers API calls with its own error codes (InternalFailure, ...), never
    an HTML page. Modules consult this only around the calls the stand-in is
    known to lack.
    """
    if isinstance(exc, ResponseParserError):
        return "500 Internal Server Error" in str(exc)
    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    if "NotImplemented" in code or "not yet implemented" in message.lower():
        return True
    page = message.lstrip().lower().startswith(("<!doctype html", "<html"))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status == 500 and code == "500" and ("Internal Server Error" in message or page):
        return True
    return code == "404" and page


def wait_until(fetch, ready, *, what, timeout, delay=2.0, sleep=time.sleep, clock=time.monotonic):
    """Call `fetch()` until `ready(value)` holds or `timeout` seconds pass; return the value.

    Raises Failure naming `what` and the last value seen when time runs out.
    """
    deadline = clock() + timeout
    while True:
        value = fetch()
        if ready(value):
            return value
        if clock() + delay > deadline:
            raise Failure(
                f"timed out after {timeout:g} s waiting for {what} (last seen: {value!r}); "
                "raise the module's wait_timeout or check the resource in the console"
            )
        sleep(delay)


def tag_changes(current, desired, purge):
    """What to set and what to remove to go from `current` to `desired` (dicts).

    `desired` None means "leave tags alone".
    """
    if desired is None:
        return {}, []
    to_set, to_remove = compare_aws_tags(current or {}, desired, purge_tags=purge)
    return to_set, list(to_remove)


def tags_after(current, to_set, to_remove):
    """The tags a resource carries once `tag_changes()`' answer is written."""
    return {k: v for k, v in {**(current or {}), **to_set}.items() if k not in to_remove}


def apply_tags(tag_call, untag_call, to_set, to_remove):
    """Write `tag_changes()`' answer: `untag_call(keys)`, then `tag_call(tags)`, each if needed.

    Every service names the resource and shapes the tags its own way, so the module
    passes two small adapters. Removals go first: a resource's tag limit still counts
    the tags on their way out.
    """
    if to_remove:
        untag_call(to_remove)
    if to_set:
        tag_call(to_set)


def carries(present, wanted):
    """Whether the tag dict `present` holds every key and value of `wanted`."""
    present = present or {}
    return all(present.get(key) == value for key, value in (wanted or {}).items())


MAX_PAGES = 100


def pages(call, key, *, marker="NextToken", next_marker=None, **kwargs):
    """Every item under `key` of a paginated call (with retries), in order.

    `marker` names the request's page token, `next_marker` the answer's when it differs
    (Lambda asks with Marker and answers NextMarker). Bounded: a listing longer than
    MAX_PAGES pages fails rather than loop forever.
    """
    items, token = [], None
    for _ in range(MAX_PAGES):
        page = call(aws_retry=True, **kwargs, **({marker: token} if token else {}))
        items.extend(page.get(key) or [])
        token = page.get(next_marker or marker)
        if not token:
            return items
    raise Failure(f"more than {MAX_PAGES} pages of {key}: list them with the AWS CLI")


def result(module, changed, before, after, **extra):
    """The exit dictionary: changed, the resource's view (`after`), and the diff if asked."""
    out = dict(changed=changed, **extra)
    if module._diff:
        out["diff"] = {"before": before or {}, "after": after or {}}
    return out


def ensure_state(module, service, check, present, absent):
    """Most modules' glue: refuse an untagged delete, check the input, a client on the module's
    connection, then `present` or `absent` (client, params, check_mode, warn) → a dict of
    changed, before, after and the resource's view → the exit dictionary."""
    params = module.params
    refuse_untagged_delete(params)
    check(params)
    client = retrying_client(module, service)
    state = present if params["state"] == "present" else absent
    return result(module, **state(client, params, module.check_mode, module.warn))


def run(module, action):
    """Run `action()` → exit dict, turning Failure and botocore errors into clear failures."""
    try:
        outcome = action()
    except Failure as exc:
        if exc.exception is not None:
            module.fail_json_aws(exc.exception, msg=exc.message)
        module.fail_json(msg=exc.message)
    except (BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg=f"{module._name}: AWS refused the call")
    except ResponseParserError as exc:
        module.fail_json(
            msg=f"{module._name}: the endpoint answered something that is not AWS's API "
            f"(check endpoint_url): {str(exc)[:300]}"
        )
    module.exit_json(**outcome)
