"""tlops.client without a server: the retry rules, the error lines, following a job."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tlops.cli import client
from tlops.cli.client import Api, ApiError, Reply, TokenSource


class Scripted(Api):
    """An Api whose answers are scripted; records what it was asked with which token."""

    def __init__(self, answers: list[Reply], tokens: TokenSource, **kwargs: Any):
        self.slept: list[float] = []
        super().__init__("https://api.invalid", tokens, sleep=self.slept.append, **kwargs)
        self.answers = list(answers)
        self.sent: list[tuple[str, str, str]] = []

    def _send(self, method: str, path: str, body: Any, token: str) -> Reply:
        self.sent.append((method, path, token))
        return self.answers.pop(0)


def reply(status: int, body: Any = None, **headers: str) -> Reply:
    return Reply(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def test_a_token_source_needs_a_token_or_a_way_to_get_one():
    with pytest.raises(ValueError, match="a token or a way"):
        TokenSource()
    fixed = TokenSource(token="t")
    assert (fixed.get(), fixed.renewable) == ("t", False)
    with pytest.raises(ApiError, match="tlops login"):
        fixed.renew()


def test_a_renewable_token_is_fetched_lazily_and_renewed_once_per_request():
    fetched = iter(["first", "second", "third"])
    tokens = TokenSource(fetch=lambda: next(fetched))
    api = Scripted([reply(401), reply(403, {"error": "invalid_token"})], tokens)
    answer = api.request("GET", "/jobs/x")
    assert answer.status == 403  # renewed after the 401, refused again: given up, not looped
    assert [token for *_, token in api.sent] == ["first", "second"]


def test_a_403_that_is_not_about_the_token_is_not_renewed():
    tokens = TokenSource(fetch=lambda: "t")
    api = Scripted([reply(403, {"error": "forbidden"})], tokens)
    assert api.request("GET", "/queue-health").status == 403
    assert len(api.sent) == 1


def test_429_is_waited_out_as_retry_after_says_then_given_up():
    answers = [reply(429, retry_after="2"), reply(429, retry_after="x"), reply(202, {"id": "j"})]
    api = Scripted(answers, TokenSource(token="t"), max_rate_waits=3)
    assert api.submit({"prompt": "p"}) == {"id": "j"}
    assert api.slept == [2.0, 1.0]  # an unreadable Retry-After counts as one second
    limited = Scripted([reply(429, {"error": "rate_limited", "retry_after": 3})] * 2,
                       TokenSource(token="t"), max_rate_waits=1)  # fmt: skip
    with pytest.raises(ApiError, match="rate limited: retry in 3 s") as refused:
        limited.submit({"prompt": "p"})
    assert refused.value.status == 429


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (reply(400, {"error": "invalid_request", "field": "idle", "message": "must be 1-30"}),
         "the request was refused: idle: must be 1-30"),
        (reply(403, {"error": "invalid_token"}), "log in again"),
        (reply(403, {"error": "mfa_required", "message": "admin routes need a sign-in with MFA"}),
         "admin routes need a sign-in with a second factor"),
        (reply(503, {"error": "queue_unavailable"}), "the API answered 503 queue_unavailable"),
        (reply(503, {"error": "instance_unavailable", "message": "no capacity"}),
         "instance_unavailable: no capacity"),
        (reply(502, "<html>bad gateway</html>"), "the API answered 502 error"),
    ],
)  # fmt: skip
def test_error_answers_become_one_actionable_line(answer, expected):
    assert expected in client.describe(answer)


def test_follow_reports_each_status_once_and_slows_its_polling():
    views = (
        [{"status": "queued"}] * 3
        + [{"status": "running"}] * 2
        + [{"status": "done", "output_inline": True, "output": "hi"}]
    )
    api = Scripted([reply(200, v) for v in views], TokenSource(token="t"))
    seen, slept = [], []
    final = client.follow(api, "job", timeout=60, on_change=lambda v: seen.append(v["status"]),
                          clock=lambda: 0.0, sleep=slept.append)  # fmt: skip
    assert seen == ["queued", "running", "done"]
    assert final["output"] == "hi"
    assert slept[0] == 0.2 and slept[1] == pytest.approx(0.3) and slept[3] == 0.2  # reset


def test_follow_reads_a_running_jobs_text_at_the_nodes_publishing_rate():
    """With `on_partial`, a running job is read every half second (the node publishes its
    `partial_output` about that often, openapi.yaml) and each read's text handed on; without
    it, the polling slows down as before."""
    views = [{"status": "running", "partial_output": text} for text in ("", "He", "Hello")]
    done = {"status": "done", "output_inline": True, "output": "Hello!"}
    texts, slept = [], []
    api = Scripted([reply(200, v) for v in [*views, done]], TokenSource(token="t"))
    client.follow(api, "job", timeout=60, on_partial=texts.append, clock=lambda: 0.0,
                  sleep=slept.append)  # fmt: skip
    assert (texts, slept) == (["", "He", "Hello"], [0.5, 0.5, 0.5])


def test_follow_times_out_with_the_last_status():
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    api = Scripted([reply(200, {"status": "queued"})] * 100, TokenSource(token="t"))
    with pytest.raises(TimeoutError, match="still queued after 3 s"):
        client.follow(api, "job", timeout=3, clock=lambda: now[0], sleep=sleep)


def test_follow_fetches_a_large_output_through_its_url(monkeypatch):
    done = {"status": "done", "output_inline": False, "result_url": "https://s3/x"}
    api = Scripted([reply(200, done)], TokenSource(token="t"))
    monkeypatch.setattr(client, "fetch_url", lambda url: {"output": "long", "usage": {"n": 1}})
    final = client.follow(api, "job", timeout=5)
    assert (final["output"], final["usage"]) == ("long", {"n": 1})


def test_a_job_that_is_not_there_is_an_error_with_its_status():
    api = Scripted([reply(404, {"error": "not_found", "id": "j"})], TokenSource(token="t"))
    with pytest.raises(ApiError) as missing:
        api.job("j")
    assert missing.value.status == 404


def test_follow_reports_each_boot_phase_of_a_queued_job():
    views = [
        {"status": "queued", "boot_phase": "starting instance"},
        {"status": "queued", "boot_phase": "starting services"},
        {"status": "queued", "boot_phase": "starting services"},
        {"status": "queued", "boot_phase": "loading model"},
        {"status": "queued"},
        {"status": "done", "output_inline": True, "output": "hi"},
    ]
    api = Scripted([reply(200, v) for v in views], TokenSource(token="t"))
    seen = []
    client.follow(api, "job", timeout=60, on_change=lambda v: seen.append(v.get("boot_phase")),
                  clock=lambda: 0.0, sleep=lambda _: None)  # fmt: skip
    assert seen == ["starting instance", "starting services", "loading model", None, None]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_the_nodes_phase_and_the_eta_countdown():
    from tlops.cli.infer import Progress

    stream = _Tty()
    progress = Progress(stream)
    progress.accepted({"status": "starting", "eta": 35, "id": "j"})
    progress.changed({"status": "queued", "boot_phase": "loading model"})
    shown = stream.getvalue().split("\r\033[K")
    assert shown[1] == "starting the GPU node, ETA 35 s"
    assert shown[2] == "starting the GPU node (loading model), ETA 35 s"
    progress.changed({"status": "running"})
    assert stream.getvalue().endswith("running")
