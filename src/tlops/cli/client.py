"""The edge API as a client sees it: submit a prompt, follow the job, read the result, list
and cancel jobs.

Used by `tlops infer`, `tlops job` and `tlops jobs`. Tokens come from a `TokenSource`: a
fixed token (given by the user, never renewed) or a function that obtains a fresh one (the
hosted-UI login, or the local stand-in's users); an answer of 401/403
`invalid_token` renews a renewable token once and repeats the request.
Rate limiting (429) is waited out for up to `max_rate_waits` times, honouring
`Retry-After`.

The token goes to the configured API only, and only over https or to a loopback
address (the local stack's gateway): plain http anywhere else would carry it
readable by every hop. An API call that is redirected is refused, not followed
(urllib would send the token along to wherever the redirect points). Result URLs
must be https, or http on loopback (the stand-in).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from tlops.cli.session import CliError
from tlops.contract import ErrorCode, JobStatus

FINAL_STATUSES = frozenset(
    {JobStatus.DONE, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELLED}
)
# Finished jobs that may have an output: done, or cancelled while running (it keeps its text).
WITH_OUTPUT = frozenset({JobStatus.DONE, JobStatus.CANCELLED})
# How often a running job is read while its text is shown as it arrives: the node publishes
# `partial_output` about every half second (docs/api.md), so polling faster shows nothing new.
PARTIAL_POLL_SECONDS = 0.5


class ApiError(Exception):
    """The API refused or could not answer; `status` is 0 when it could not be reached."""

    def __init__(self, status: int, message: str, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


def unreachable(base_url: str, error: BaseException, timeout: float) -> str:
    """Why the API at `base_url` could not be reached, and what to do next: a refused
    connection on this machine is the local stack not running; one elsewhere, a name
    that does not resolve or a silent host is the URL (or the network)."""
    reason = getattr(error, "reason", error)  # URLError wraps the socket's own error
    host = urllib.parse.urlsplit(base_url).hostname or ""
    said = f"cannot reach the API at {base_url}"
    if isinstance(reason, ConnectionRefusedError):
        if _is_loopback(host):
            return (f"{said}: nothing listens there; start the local stack "
                    "(`tlops local up`) or check TL_API_URL / --api-url")  # fmt: skip
        return f"{said}: the connection was refused; check TL_API_URL / --api-url"
    if isinstance(reason, socket.gaierror):
        return (f"{said}: the name {host!r} does not resolve; check TL_API_URL / --api-url "
                "(playbooks/status.yml prints the deployed API's URL)")  # fmt: skip
    if isinstance(reason, TimeoutError):
        return (f"{said}: no answer within {timeout:g} s; check the network, or raise "
                "the timeout if the API is slow")  # fmt: skip
    return f"{said}: {reason}"


class TokenSource:
    def __init__(self, *, token: str | None = None, fetch: Callable[[], str] | None = None):
        if token is None and fetch is None:
            raise ValueError("a token or a way to fetch one is needed")
        self._token, self._fetch = token, fetch

    @property
    def renewable(self) -> bool:
        return self._fetch is not None

    def get(self) -> str:
        if self._token is None:
            assert self._fetch is not None
            self._token = self._fetch()
        return self._token

    def renew(self) -> str:
        if self._fetch is None:
            raise ApiError(403, "the API refused the token: get a new one (tlops login)")
        self._token = self._fetch()
        return self._token


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hands a 3xx back as it is (an HTTPError), so no request follows it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL a result may come from (S3 redirects between
    regions), so an https URL cannot be downgraded to plain http on the way."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_result_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_API_OPENER = urllib.request.build_opener(_NoRedirects)
_RESULT_OPENER = urllib.request.build_opener(_CheckedRedirects)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_result_url(url: str) -> None:
    """Raise ApiError unless `url` is https, or http to loopback (the local stand-in)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return
    raise ApiError(0, f"refusing to read the result from {url!r}: not an https URL")


def _is_url(parts: urllib.parse.SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_api_url(url: str, *, source: str = "the API URL") -> None:
    """Raise CliError unless `url` is a URL and the bearer token may go to it: https, or
    http to a loopback address (127.0.0.0/8, ::1, localhost: the local stack's gateway).
    `source`: where the URL came from, for the message (e.g. `--api-url`)."""
    parts = urllib.parse.urlsplit(url)
    if not _is_url(parts):
        raise CliError(
            f"{source}: {url!r} is not a URL; give the API's https URL "
            "(https://ID.execute-api.REGION.amazonaws.com), or for the local stack its "
            "loopback address (http://127.0.0.1:PORT)"
        )
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return
    raise CliError(
        f"refusing to send the token to {url}: it is not an https URL, and plain http to "
        "a host that is not loopback lets anyone on the way read the token. Use the API's "
        "https URL (--api-url, TL_API_URL or --env NAME; an HTTP API's invoke URL is "
        "https), or a loopback address (http://127.0.0.1:PORT) for the local stack"
    )


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class Api:
    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        *,
        timeout: float = 30.0,
        max_rate_waits: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ):
        check_api_url(base_url)
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.timeout = timeout
        self.max_rate_waits = max_rate_waits
        self._sleep = sleep

    def _send(self, method: str, path: str, body: Any, token: str) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        headers = {"authorization": f"Bearer {token}"}
        if data is not None:
            headers["content-type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - the configured API URL
            self.base_url + path, data=data, method=method, headers=headers
        )
        try:
            with _API_OPENER.open(request, timeout=self.timeout) as response:
                raw, status, out = response.read(), response.status, response.headers
        except urllib.error.HTTPError as exc:
            raw, status, out = exc.read(), exc.code, exc.headers
        except (OSError, ValueError) as exc:
            raise ApiError(0, unreachable(self.base_url, exc, self.timeout)) from None
        if 300 <= status < 400:
            raise ApiError(
                status,
                f"the API at {self.base_url} redirected {method} {path} to "
                f"{out.get('location', 'nowhere')}: not followed, so the token stays with the "
                "API (check TL_API_URL)",
            )
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Reply(status, {k.lower(): v for k, v in out.items()}, parsed)

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        renewed, rate_waits = False, 0
        while True:
            reply = self._send(method, path, body, self.tokens.get())
            refused = reply.status == 401 or (
                reply.status == 403
                and isinstance(reply.body, dict)
                and reply.body.get("error") == ErrorCode.INVALID_TOKEN
            )
            if refused and self.tokens.renewable and not renewed:
                self.tokens.renew()
                renewed = True
                continue
            if reply.status == 429 and rate_waits < self.max_rate_waits:
                rate_waits += 1
                self._sleep(_retry_after(reply))
                continue
            return reply

    def submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        reply = self.request("POST", "/infer", payload)
        if reply.status != 202:
            raise ApiError(reply.status, describe(reply), reply.body)
        return reply.body

    def job(self, job_id: str) -> dict[str, Any]:
        return self._ok(self.request("GET", f"/jobs/{job_id}"))

    def jobs(self, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """One page of the caller's jobs, newest first: `{"jobs": [...], "next_cursor"}`."""
        query = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        path = "/jobs" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        return self._ok(self.request("GET", path))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """The job as it is after asking for its cancel (POST /jobs/{id}/cancel)."""
        return self._ok(self.request("POST", f"/jobs/{job_id}/cancel"))

    @staticmethod
    def _ok(reply: Reply) -> Any:
        if reply.status != 200:
            raise ApiError(reply.status, describe(reply), reply.body)
        return reply.body


def _retry_after(reply: Reply) -> float:
    try:
        return max(0.0, float(reply.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def describe(reply: Reply) -> str:
    """One line an operator can act on, from an error answer."""
    body = reply.body if isinstance(reply.body, dict) else {}
    code = body.get("error") or body.get("message") or "error"
    detail = body.get("message", "")
    if code == ErrorCode.INVALID_REQUEST:
        return f"the request was refused: {body.get('field')}: {detail}"
    if code == ErrorCode.RATE_LIMITED:
        return f"rate limited: retry in {body.get('retry_after')} s"
    if code == ErrorCode.FORBIDDEN:
        why = detail or "this token may not use this route"
        return (
            f"forbidden (403): {why}. The token is valid but its user is not in that group: "
            "use an admin's token (locally `tlops token --user NAME --group admins`)"
        )
    if code == ErrorCode.MFA_REQUIRED:
        return (
            "MFA required (403): admin routes need a sign-in with a second factor: log in "
            "again (tlops login) and give your authenticator app's code"
        )
    if reply.status in (401, 403):
        return "the API refused the token: log in again (tlops login)"
    hint = f": {detail}" if detail and detail != code else ""
    return f"the API answered {reply.status} {code}{hint}"


def fetch_url(url: str, timeout: float = 30.0) -> dict[str, Any]:
    """The result JSON behind a presigned URL (for results too large to come inline)."""
    check_result_url(url)
    try:
        with _RESULT_OPENER.open(url, timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError) as exc:
        raise ApiError(0, f"cannot read the result: {exc}") from None


def follow(
    api: Api,
    job_id: str,
    *,
    timeout: float,
    on_change: Callable[[dict[str, Any]], None] = lambda _: None,
    on_partial: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll `GET /jobs/{id}` until the job is final; returns its last view.

    Polls fast at first and slower while nothing changes (0.2 s up to 2 s); a change of
    status, or of the node's boot phase while the job waits for a boot, is a change.
    With `on_partial`, a running job is read every PARTIAL_POLL_SECONDS and its text so
    far (`partial_output`) handed to it each time. Raises TimeoutError after `timeout`
    seconds.
    """
    deadline = clock() + timeout
    interval, last, seen = 0.2, None, None
    while True:
        view = api.job(job_id)
        if (view.get("status"), view.get("boot_phase")) != seen:
            seen = (view.get("status"), view.get("boot_phase"))
            last = view.get("status")
            interval = 0.2
            on_change(view)
        if on_partial is not None and view.get("status") == JobStatus.RUNNING:
            on_partial(view.get("partial_output") or "")
            interval = PARTIAL_POLL_SECONDS
        if view.get("status") in FINAL_STATUSES:
            if view.get("status") in WITH_OUTPUT and not view.get("output_inline"):
                stored = fetch_url(view["result_url"]) if view.get("result_url") else {}
                view = {**view, **{k: stored[k] for k in ("output", "usage") if k in stored}}
            return view
        if clock() + interval > deadline:
            raise TimeoutError(f"job {job_id} was still {last} after {timeout:g} s")
        sleep(interval)
        interval = min(2.0, interval * 1.5)
