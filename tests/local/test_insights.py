"""The Logs Insights queries of observability/queries/ and the evaluator that runs them over
the local stack's logs: each query's answer on known log lines, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlops.cli import main
from tlops.local import insights
from tlops.tooling import queries

SUB_A, SUB_B = "0b7c2f1e-aaaa-4aaa-8aaa-000000000001", "0b7c2f1e-bbbb-4bbb-8bbb-000000000002"
JOB = "5d0c7a4e-1f2b-4c3d-9e8f-0123456789ab"


def access(route: str, status, latency, sub: str = "-") -> dict:
    """An access-log line as the gateway writes it (numbers) or API Gateway (strings)."""
    return {"requestId": "r", "ip": "127.0.0.1", "route": route, "status": status,
            "jwtSub": sub, "latencyMs": latency, "userAgent": "t"}  # fmt: skip


ACCESS = [
    *(access("POST /infer", 202, ms, SUB_A) for ms in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)),
    access("POST /infer", "429", "3", SUB_A),  # API Gateway writes strings
    access("POST /infer", 429, 2, SUB_A),
    access("POST /infer", 429, 2, "-"),  # the stage's throttle: before the authorizer
    access("GET /jobs/{id}", 200, "5.5", SUB_B),
    access("GET /jobs/{id}", 503, 7, SUB_B),
    access("POST /infer", 503, 9, SUB_B),
    access("POST /infer", "503", "11", SUB_A),
    access("-", 404, 1),
]
ROUTER = [
    {"level": "INFO", "message": "job queued", "service": "router", "timestamp": 1000,
     "requestId": "q1", "jobId": JOB, "sub": SUB_A},
    {"level": "INFO", "message": "job queued", "service": "router", "timestamp": 1001,
     "requestId": "q2", "jobId": "another", "sub": SUB_A},
]  # fmt: skip
WATCHER = [
    {"level": "INFO", "message": "job done", "service": "watcher", "timestamp": 3000,
     "job_id": JOB, "delivery": 1},
    {"level": "WARNING", "message": "job will be retried", "service": "watcher",
     "timestamp": 2000, "job_id": JOB, "error": "vLLM 503"},
]  # fmt: skip


def run(name: str, events: list[dict], **params: str) -> list[dict]:
    query = queries.load()[name]
    return insights.compile_query(query.filled(params))(events)


def test_every_query_file_parses_and_names_known_log_groups():
    found = queries.load()
    assert set(found) == {"api_latency_p95", "api_5xx_by_route", "api_429_per_user", "job_path"}
    for query in found.values():
        assert set(query.log_groups) <= set(queries.LOG_GROUPS)
        assert "#" not in query.text  # the header stays out of what is saved
        insights.compile_query(query.filled(dict.fromkeys(query.params, "x")))


def test_p95_latency_by_route():
    rows = run("api_latency_p95", ACCESS)
    assert rows[0] == {"route": "POST /infer", "p95Ms": 100.0, "avgMs": pytest.approx(577 / 15),
                       "requests": 15}  # fmt: skip
    assert rows[1]["route"] == "GET /jobs/{id}" and rows[1]["p95Ms"] == 7.0
    assert "-" not in [r["route"] for r in rows]


def test_5xx_by_route_counts_strings_and_numbers_alike():
    rows = run("api_5xx_by_route", ACCESS)
    assert sum(r["errors"] for r in rows) == 3  # 503 and "503" alike; 404 and 429 are not 5xx
    assert sum(r["errors"] for r in rows if r["route"] == "POST /infer") == 2
    assert rows[0]["errors"] >= rows[-1]["errors"]


def test_429_per_user():
    rows = run("api_429_per_user", ACCESS)
    assert rows == [{"jwtSub": SUB_A, "throttled": 2}, {"jwtSub": "-", "throttled": 1}]


def test_the_job_path_across_router_and_watcher_in_time_order():
    rows = run("job_path", ROUTER + WATCHER, JOB_ID=JOB)
    assert [r["message"] for r in rows] == ["job queued", "job will be retried", "job done"]
    assert rows[0]["requestId"] == "q1" and rows[1]["error"] == "vLLM 503"
    assert set(rows[0]) == {"@timestamp", "service", "level", "message", "requestId",
                            "delivery", "error"}  # fmt: skip


def test_a_parameter_must_be_given_and_known():
    query = queries.load()["job_path"]
    with pytest.raises(queries.QueryFileError, match="--param JOB_ID=VALUE"):
        query.filled({})
    with pytest.raises(queries.QueryFileError, match="no parameter NOPE"):
        query.filled({"JOB_ID": JOB, "NOPE": "x"})
    assert '\\"' in query.filled({"JOB_ID": 'a"b'})  # a quote cannot end the string early


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('filter route like /jobs/ | stats count(*) as n', [{"n": 2}]),
        ('filter route like "infer" and not status = 202 | stats count(*) as n', [{"n": 5}]),
        ("filter status in [404, 429] | stats count(*) as n", [{"n": 4}]),
        ("filter (status = 404 or status = 200) and ispresent(jwtSub) | stats count(*) as n",
         [{"n": 2}]),
        ('filter jwtSub != "-" | stats count_distinct(jwtSub) as users', [{"users": 2}]),
        ("filter status = 202 | stats min(latencyMs) as lo, max(latencyMs) as hi, "
         "sum(latencyMs) as total", [{"lo": 10.0, "hi": 100.0, "total": 550.0}]),
        ("filter status = 202 | sort latencyMs desc | limit 2 | fields latencyMs",
         [{"latencyMs": 100}, {"latencyMs": 90}]),
        ("filter missing = 1 | stats count(*) as n", []),
    ],
)  # fmt: skip
def test_the_subset_it_evaluates(text, expected):
    assert insights.compile_query(text)(ACCESS) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("parse @message /x/", "unknown command 'parse'"),
        ("stats median(latencyMs)", "unknown aggregate 'median'"),
        ("filter status ~ 5", "cannot read the query"),
        ("filter status", "ends where"),
        ("limit 0", "positive number"),
        ("sort status desc extra", "did not understand 'extra'"),
    ],
)
def test_what_it_cannot_evaluate_is_refused_by_name(text, words):
    with pytest.raises(insights.QueryError, match=words):
        insights.compile_query(text)


def test_a_query_file_without_log_groups_or_with_unknown_ones_is_refused(tmp_path):
    (tmp_path / "a.cwi").write_text("# title: x\nfields @message\n")
    with pytest.raises(queries.QueryFileError, match="logGroups"):
        queries.load(tmp_path)
    (tmp_path / "a.cwi").write_text("# logGroups: access, nginx\nfields @message\n")
    with pytest.raises(queries.QueryFileError, match="unknown log group 'nginx'"):
        queries.load(tmp_path)


def test_the_definitions_the_role_saves():
    groups = {"access": "/tinyllama/http-api-access", "router": "/aws/lambda/tinyllama-router",
              "queue_health": "/aws/lambda/tinyllama-queue-health"}  # fmt: skip
    saved = {d["name"]: d for d in queries.definitions(queries.QUERIES_DIR, groups, "tinyllama")}
    # the watcher's lines stay on the node: on an account the saved job_path reads the router's
    assert saved["tinyllama/job_path"]["log_group_names"] == ["/aws/lambda/tinyllama-router"]
    assert saved["tinyllama/api_5xx_by_route"]["query_string"].startswith("filter status >= 500")
    with pytest.raises(queries.QueryFileError, match="no log group name given for 'router'"):
        queries.definitions(queries.QUERIES_DIR, {**groups, "router": ""}, "tinyllama")


# --- over the local stack's log files ---------------------------------------------------
def write_logs(state_dir: Path) -> None:
    lines = [json.dumps(r) for r in ACCESS + ROUTER] + ["local gateway listening on ..."]
    (state_dir / "gateway.log").write_text("\n".join(lines) + "\n")
    (state_dir / "watcher.log").write_text("\n".join(json.dumps(r) for r in WATCHER) + "\n{bad\n")


def test_local_events_sort_the_shared_log_into_groups(tmp_path):
    write_logs(tmp_path)
    assert len(insights.local_events(tmp_path, ["access"])) == len(ACCESS)
    router = insights.local_events(tmp_path, ["router"])
    assert {e["@log"] for e in router} == {"router"} and len(router) == 2
    assert router[0]["@timestamp"] == 1000 and router[0]["@message"].startswith("{")
    assert len(insights.local_events(tmp_path, ["router", "watcher"])) == 4
    assert insights.local_events(tmp_path / "nowhere", ["access"]) == []


def test_tlops_local_logs_query_prints_a_table_or_json(tmp_path, monkeypatch, capsys):
    """`tlops local logs`, and `tlops logs`, its alias: the stand-in's logs, whatever the
    shell names (it takes no --env: an account runs the saved definitions itself)."""
    write_logs(tmp_path)
    monkeypatch.setenv("TLOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TL_API_URL", "https://api.example.com")
    assert main(["local", "logs", "query", "api_429_per_user"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["jwtSub", "throttled"]
    assert out[1].split() == [SUB_A, "2"]
    assert main(["logs", "query", "job_path", "--param", f"JOB_ID={JOB}", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["local", "logs", "query", "nope"], "no query 'nope'"),
        (["logs", "query", "job_path"], "--param JOB_ID=VALUE"),
        (["local", "logs", "query", "job_path", "--param", "JOB_ID"], "NAME=VALUE"),
    ],
)
def test_tlops_logs_refusals_exit_6(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.setenv("TLOPS_STATE_DIR", str(tmp_path))
    assert main(argv) == 6  # SETUP: 2 is argparse's alone
    assert words in capsys.readouterr().err


def test_tlops_logs_list(capsys):
    assert main(["local", "logs", "list"]) == 0
    listed = capsys.readouterr().out
    assert "job_path" in listed
    assert main(["logs", "list"]) == 0
    assert capsys.readouterr().out == listed
    with pytest.raises(SystemExit) as refused:
        main(["logs", "list", "--env", "prod"])  # no account's logs here
    assert refused.value.code == 2
