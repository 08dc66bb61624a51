"""`tlops infer` showing the text as it arrives, `--chat`/`--system`, `tlops jobs` and
`tlops job ID --cancel` (issue 21), against a loopback HTTP double that answers with the
shapes openapi.yaml documents (GET /jobs/{id} with `partial_output`, the JobList of
GET /jobs, the Job of POST /jobs/{id}/cancel)."""

from __future__ import annotations

import io
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tlops.cli import client, main
from tlops.cli.exits import ExitCode
from tlops.cli.infer import StreamedText

JOB = "6f1c0a52-3e8b-4d2f-9a71-0c5e2b8d4f10"
Answer = Callable[[str, str, dict[str, str], Any], tuple[int, Any]]


class ScriptedApi:
    """A loopback API: `answer(method, path, query, body)` gives each reply's status and body.
    Each request is recorded with its query and body, and with what `watch()` returned at the
    moment it arrived (what the terminal showed when the CLI asked again)."""

    def __init__(self, answer: Answer, watch: Callable[[], str] = lambda: ""):
        self.requests: list[dict[str, Any]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                """Quiet."""

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                seen = {"method": self.command, "path": parts.path, "query": query}
                double.requests.append({**seen, "body": body, "shown": watch()})
                status, reply = answer(self.command, parts.path, query, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve(monkeypatch) -> Iterator[Callable[..., ScriptedApi]]:
    """Starts a ScriptedApi and points the CLI at it with a fixed token."""
    started: list[ScriptedApi] = []
    monkeypatch.delenv("TL_AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("TL_TOKEN", "header.payload.signature")
    monkeypatch.setattr(client, "PARTIAL_POLL_SECONDS", 0.05)  # the node's half second, shorter

    def start(answer: Answer, watch: Callable[[], str] = lambda: "") -> ScriptedApi:
        api = ScriptedApi(answer, watch)
        started.append(api)
        monkeypatch.setenv("TL_API_URL", api.url)
        return api

    yield start
    for api in started:
        api.close()


class Terminal(io.StringIO):
    """stdout as a terminal: what was written, in order."""

    def isatty(self) -> bool:
        return True


def generating(*views: dict[str, Any]) -> Answer:
    """POST /infer queues JOB; each GET /jobs/JOB answers the next view, the last repeated."""
    polls = iter(views)
    last: dict[str, Any] = {}

    def answer(method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        nonlocal last
        if (method, path) == ("POST", "/infer"):
            return 202, {"status": "queued", "id": JOB}
        last = next(polls, last)
        return 200, {"id": JOB, **last}

    return answer


HELLO = (
    {"status": "running", "attempts": 1, "partial_output": "He"},
    {"status": "running", "attempts": 1, "partial_output": "Hello wo"},
    {"status": "done", "attempts": 1, "output": "Hello world", "output_inline": True},
)


def test_infer_streams_the_text_on_a_terminal_only_and_never_twice(serve, monkeypatch):
    """On a terminal each poll prints only what is new, and the screen ends with the output
    once; piped, or with --json, only the finished job is printed, as before."""
    terminal = Terminal()
    api = serve(generating(*HELLO), watch=terminal.getvalue)
    monkeypatch.setattr("sys.stdout", terminal)
    assert main(["infer", "Say hello"]) == ExitCode.OK
    polls = [r["shown"] for r in api.requests if r["method"] == "GET"]
    assert polls == ["", "He", "Hello wo"]  # each poll came after the text so far was shown
    assert terminal.getvalue() == "Hello world\n"  # no part twice, the output exactly once

    for printed, argv in ((io.StringIO(), []), (Terminal(), ["--json"])):
        api = serve(generating(*HELLO), watch=printed.getvalue)
        monkeypatch.setattr("sys.stdout", printed)
        assert main(["infer", "Say hello", *argv]) == ExitCode.OK
        assert {r["shown"] for r in api.requests} == {""}, argv  # nothing before the end
        if argv:
            assert json.loads(printed.getvalue())["output"] == "Hello world"
        else:
            assert printed.getvalue() == "Hello world\n"


def test_streamed_text_never_unprints_and_ends_with_the_output_whole():
    """A partial that does not extend what is shown is not printed; a final output that does
    not start with it comes on a line of its own (it always should extend it)."""
    shown = io.StringIO()
    text = StreamedText(shown)
    text.grew("Hello wo")
    text.grew("Help")
    assert shown.getvalue() == "Hello wo"
    text.end("Goodbye")
    assert shown.getvalue() == "Hello wo\nGoodbye\n"


def test_a_job_cancelled_while_streaming_ends_its_line_and_exits_1(serve, monkeypatch, capsys):
    """Cancelled is final: infer stops following (the partial output is kept as the job's
    output, openapi.yaml's cancel) instead of polling until --timeout."""
    terminal = Terminal()
    serve(
        generating(
            {"status": "running", "attempts": 1, "partial_output": "Hel"},
            {"status": "cancelled", "attempts": 1, "output": "Hel", "output_inline": True},
        )
    )
    monkeypatch.setattr("sys.stdout", terminal)
    assert main(["infer", "Say hello", "--timeout", "5"]) == ExitCode.FAILED
    assert terminal.getvalue() == "Hel\n"
    assert f"job {JOB} cancelled" in capsys.readouterr().err


def test_infer_sends_a_chat_with_chat_or_system_and_a_prompt_otherwise(serve, capsys):
    """The text is a `prompt` (completed as it is) unless --chat or --system make it the user's
    message of a conversation (openapi.yaml's InferRequest: exactly one of the two)."""
    system = {"role": "system", "content": "Answer in French."}
    user = {"role": "user", "content": "Hi"}
    for argv, sent in (
        ([], {"prompt": "Hi"}),
        (["--chat"], {"messages": [user]}),
        (["--system", "Answer in French."], {"messages": [system, user]}),
    ):
        api = serve(generating(HELLO[-1]))
        assert main(["infer", "Hi", "--max-tokens", "8", *argv]) == ExitCode.OK
        assert api.requests[0]["body"] == {**sent, "idle": 5, "max_tokens": 8}, argv


# --- tlops jobs ------------------------------------------------------------------------
def summary(job_id: str, status: str, kind: str = "prompt") -> dict[str, Any]:
    return {"id": job_id, "status": status, "created_at_ms": 86_400_000, "kind": kind}


IDS = [f"00000000-0000-4000-8000-00000000000{n}" for n in range(3)]
CURSOR = "eyJ0IjoxfQ==+/"  # opaque; characters a query string must escape


def paged(method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
    """GET /jobs: two pages of `limit` 2, the second behind CURSOR."""
    if (method, path) != ("GET", "/jobs") or query.get("limit") != "2":
        return 400, {"error": "invalid_request", "field": "limit", "message": "unexpected"}
    if query.get("cursor") == CURSOR:
        return 200, {"jobs": [summary(IDS[2], "failed")], "next_cursor": None}
    first = [summary(IDS[0], "running", "chat"), summary(IDS[1], "done")]
    first[1]["finished_at_ms"] = 86_460_000
    return 200, {"jobs": first, "next_cursor": CURSOR}


def test_jobs_all_follows_next_cursor_to_the_last_page(serve, capsys):
    api = serve(paged)
    assert main(["jobs", "--limit", "2", "--all", "--json"]) == ExitCode.OK
    listed = json.loads(capsys.readouterr().out)
    assert [job["id"] for job in listed["jobs"]] == IDS
    assert listed["next_cursor"] is None
    assert [r["query"] for r in api.requests] == [{"limit": "2"}, {"limit": "2", "cursor": CURSOR}]


def test_jobs_prints_a_table_and_how_to_get_the_next_page(serve, capsys):
    serve(paged)
    assert main(["jobs", "--limit", "2"]) == ExitCode.OK
    out, err = capsys.readouterr()
    rows = [line.split() for line in out.splitlines()]
    assert rows == [
        ["ID", "STATUS", "KIND", "CREATED", "FINISHED"],
        [IDS[0], "running", "chat", "1970-01-02", "00:00:00Z", "-"],
        [IDS[1], "done", "prompt", "1970-01-02", "00:00:00Z", "1970-01-02", "00:01:00Z"],
    ]
    heading, first, second = out.splitlines()
    assert heading.index("STATUS") == first.index("running") == second.index("done")
    assert heading.index("FINISHED") == second.index("1970-01-02 00:01:00Z")
    assert f"--cursor {CURSOR}" in err


# --- tlops job ID --cancel ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("after", "said"),
    [
        ({"status": "cancelled"}, f"job {JOB} cancelled"),
        ({"status": "running", "cancel_requested": True}, f"job {JOB} running, cancel requested"),
        (
            {"status": "done", "output_inline": True, "output": "x"},
            f"job {JOB} done: finished before the cancel, unchanged",
        ),
    ],
    ids=["queued", "running", "finished"],
)
def test_job_cancel_posts_the_cancel_and_prints_the_status_after(serve, capsys, after, said):
    api = serve(lambda method, path, query, body: (200, {"id": JOB, **after}))
    assert main(["job", JOB, "--cancel"]) == ExitCode.OK
    assert [(r["method"], r["path"]) for r in api.requests] == [("POST", f"/jobs/{JOB}/cancel")]
    assert capsys.readouterr().out.startswith(said)


@pytest.mark.parametrize("argv", [["--cancel"], []], ids=["cancel", "read"])
def test_a_job_that_is_not_the_callers_is_no_such_job_of_yours(serve, capsys, argv):
    serve(lambda method, path, query, body: (404, {"error": "not_found", "message": "no job"}))
    assert main(["job", JOB, *argv]) == ExitCode.FAILED
    out, err = capsys.readouterr()
    assert out == ""
    assert f"no such job of yours (404): {JOB}" in err
