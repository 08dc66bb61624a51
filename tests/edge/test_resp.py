"""The hot-path RESP2 client (tlops.resp) against a real redis-server."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
import redis as redis_py

from tlops.edge.resp import (
    RedisReplyError,
    RedisUnavailable,
    RedisUnreachable,
    RespClient,
    Script,
)
from tlops.local.services import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_url: str) -> Iterator[RespClient]:
    resp = RespClient(redis_url)
    yield resp
    resp.close()


# --- basic replies ---------------------------------------------------------------
def test_ping(client):
    assert client.ping() is True


def test_lazy_connect_and_close(client):
    assert client._sock is None
    assert client.ping()
    assert client._sock is not None
    client.close()
    assert client._sock is None
    client.close()  # harmless twice
    assert client.ping()


@pytest.mark.parametrize(
    "value",
    ["plain", "", "héllo wörld €😀", "line\r\nbreak", "nul\x00byte", "*3\r\n$1\r\nx", "x" * 70000],
    ids=["plain", "empty", "utf8", "crlf", "nul", "resp-like", "large"],
)
def test_set_get_round_trip(client, redis_client, value):
    assert client.execute("SET", "k", value) == "OK"
    assert client.execute("GET", "k") == value
    assert redis_client.get("k") == value  # what the reference client reads


def test_large_value_round_trip(client):
    value = "é" * 600_000  # 1.2 MB: many recv() calls for one bulk reply
    client.execute("SET", "big", value)
    assert client.execute("GET", "big") == value
    assert client.execute("STRLEN", "big") == 1_200_000


def test_bytes_arguments_are_sent_verbatim(client, redis_url):
    raw = b"\x00\xff\xfe\r\n\x80"
    assert client.execute("SET", b"bin-key", raw) == "OK"
    reference = redis_py.Redis.from_url(redis_url)  # no decoding
    try:
        assert reference.get(b"bin-key") == raw
    finally:
        reference.close()
    assert client.execute("STRLEN", "bin-key") == len(raw)


def test_non_utf8_value_is_not_reported_as_unavailable(client, redis_url):
    raw = b"\xff\x00\xfe"
    reference = redis_py.Redis.from_url(redis_url)
    try:
        reference.set("bin", raw)
    finally:
        reference.close()
    try:
        value = client.execute("GET", "bin")
    except RedisUnavailable as exc:
        pytest.fail(f"a valid reply was reported as an outage: {exc}")
    assert value in (raw, raw.decode("utf-8", "surrogateescape"))


def test_numbers_are_sent_as_text(client):
    client.execute("SET", "i", 42)
    client.execute("SET", "f", 1.5)
    assert client.execute("GET", "i") == "42"
    assert client.execute("GET", "f") == "1.5"
    assert client.execute("INCRBY", "i", -50) == -8


def test_hset_hgetall_round_trip(client, redis_client):
    fields = {"status": "queued", "prompt": "héllo\r\n€", "error": "", "idle": "5"}
    flat = [part for item in fields.items() for part in item]
    assert client.execute("HSET", "job", *flat) == 4
    assert client.hgetall("job") == fields
    assert redis_client.hgetall("job") == fields
    assert client.execute("HSET", "job", "status", "running") == 0
    assert client.hgetall("job")["status"] == "running"


def test_hgetall_missing_key_is_empty(client):
    assert client.hgetall("nope") == {}


def test_integer_nil_and_array_replies(client):
    assert client.execute("INCR", "counter") == 1
    assert client.execute("INCR", "counter") == 2
    assert client.execute("EXISTS", "counter", "missing") == 1
    assert client.execute("GET", "missing") is None
    assert client.execute("RPUSH", "list", "a", "", "ü") == 3
    assert client.execute("LRANGE", "list", 0, -1) == ["a", "", "ü"]
    assert client.execute("LRANGE", "missing", 0, -1) == []
    assert client.execute("MGET", "counter", "missing") == ["2", None]


def test_nil_array_reply(client):
    # BLPOP that times out answers a null array (*-1) in RESP2
    assert client.execute("BLPOP", "empty-list", 0.05) is None


def test_nested_array_reply(client):
    client.execute("XADD", "s", "1-1", "id", "abc")
    assert client.execute("XRANGE", "s", "-", "+") == [["1-1", ["id", "abc"]]]


def test_status_reply(client):
    assert client.execute("SET", "k", "v") == "OK"
    assert client.execute("TYPE", "k") == "string"


# --- errors ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "prefix"),
    [
        (("NOSUCHCOMMAND",), "ERR"),
        (("INCR", "text"), "ERR"),
        (("LPUSH", "text", "x"), "WRONGTYPE"),
        (("GET",), "ERR"),
    ],
    ids=["unknown", "not-integer", "wrongtype", "arity"],
)
def test_error_reply_raises_and_connection_survives(client, command, prefix):
    client.execute("SET", "text", "abc")
    connection = client._sock
    with pytest.raises(RedisReplyError) as info:
        client.execute(*command)
    assert str(info.value).startswith(prefix)
    assert client._sock is connection  # the same connection stays in use
    assert client.execute("GET", "text") == "abc"
    assert client.ping()


def test_reply_error_is_not_unavailable():
    assert not issubclass(RedisReplyError, RedisUnavailable)
    assert not issubclass(RedisUnavailable, RedisReplyError)


def test_unsendable_argument(client):
    assert client.ping()
    with pytest.raises(TypeError):
        client.execute("SET", "k", None)
    assert client.execute("SET", "k", "v") == "OK"
    assert client.execute("GET", "k") == "v"


# --- scripts -------------------------------------------------------------------------
def command_calls(redis_client: redis_py.Redis, name: str) -> int:
    return redis_client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0)


def test_run_script_loads_on_noscript_then_uses_evalsha(client, redis_client):
    script = Script("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
    redis_client.script_flush()
    redis_client.config_resetstat()
    assert client.run_script(script, ["n"], ["a"]) == ["n", "a", 1]
    assert command_calls(redis_client, "evalsha") == 1  # answered NOSCRIPT
    assert command_calls(redis_client, "eval") == 1  # the fallback, which caches it
    assert redis_client.script_exists(script.sha) == [True]
    assert client.run_script(script, ["n"], ["b"]) == ["n", "b", 2]
    assert client.run_script(script, ["n"], [3]) == ["n", "3", 3]
    assert command_calls(redis_client, "evalsha") == 3
    assert command_calls(redis_client, "eval") == 1


def test_script_sha_is_redis_sha(redis_client):
    script = Script("return 1")
    assert redis_client.script_load(script.source) == script.sha


def test_run_script_without_keys(client):
    assert client.run_script(Script("return ARGV[1] .. ARGV[2]"), [], ["x", "y"]) == "xy"


@pytest.mark.parametrize(
    "source",
    ["return redis.error_reply('MYERR custom')", "return redis.call('INCR', KEYS[1])"],
    ids=["error-reply", "runtime-error"],
)
def test_script_errors_propagate(client, redis_client, source):
    redis_client.set("k", "not a number")
    redis_client.script_flush()
    redis_client.config_resetstat()
    script = Script(source)
    with pytest.raises(RedisReplyError):  # EVALSHA -> NOSCRIPT -> EVAL -> the error
        client.run_script(script, ["k"], [])
    with pytest.raises(RedisReplyError):  # EVALSHA -> the error, no second EVAL
        client.run_script(script, ["k"], [])
    assert command_calls(redis_client, "eval") == 1
    assert client.ping()


def test_script_error_after_noscript_propagates(client, redis_client):
    redis_client.script_flush()
    with pytest.raises(RedisReplyError) as info:
        client.run_script(Script("this is not lua"), [], [])
    assert "NOSCRIPT" not in str(info.value)


# --- outages -------------------------------------------------------------------------
def test_closed_port_raises_unavailable():
    client = RespClient(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisUnavailable):
        client.ping()
    assert client._sock is None


def test_a_refused_connection_is_unreachable_a_silent_one_only_unavailable():
    """The router reads the stack's recorded state only when no connection could be made
    (what a deleted queue looks like); a Redis that accepts and then says nothing is an
    outage whatever the state."""
    refused = RespClient(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisUnreachable):
        refused.ping()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        silent = RespClient(f"redis://127.0.0.1:{port}/0", connect_timeout=0.2, timeout=0.2)
        with pytest.raises(RedisUnavailable) as raised:
            silent.ping()
        assert not isinstance(raised.value, RedisUnreachable)


def test_tls_to_a_plain_text_redis_raises_unavailable(redis_server, redis_url):
    client = RespClient(f"rediss://127.0.0.1:{redis_server.port}/0", connect_timeout=2.0)
    assert client.tls is True
    with pytest.raises(RedisUnavailable):
        client.ping()
    assert client._sock is None
    assert RespClient(redis_url).ping()  # the server itself is fine


def test_silent_server_raises_unavailable_after_read_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the handshake; nobody ever answers
        port = listener.getsockname()[1]
        client = RespClient(f"redis://127.0.0.1:{port}/0", connect_timeout=0.2, timeout=0.2)
        with pytest.raises(RedisUnavailable):
            client.ping()
        assert client._sock is None  # closed after the failure: the next call starts fresh
        with pytest.raises(RedisUnavailable):
            client.execute("GET", "k")
        assert client._sock is None


def test_server_sending_garbage_raises_unavailable():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = RespClient(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        client._connect()
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            with pytest.raises(RedisUnavailable):
                client.ping()
        assert client._sock is None


def test_server_closing_the_connection_raises_unavailable():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = RespClient(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        client._connect()
        conn, _ = listener.accept()
        conn.sendall(b"$10\r\nabc")  # a truncated bulk reply, then EOF
        conn.close()
        with pytest.raises(RedisUnavailable):
            client.ping()
        assert client._sock is None


def test_reconnects_after_redis_restart(redis_server, redis_url):
    client = RespClient(redis_url)
    try:
        assert client.execute("SET", "k", "v") == "OK"
        redis_server.stop()
        with pytest.raises(RedisUnavailable):
            client.ping()
        with pytest.raises(RedisUnavailable):  # still down: fails again, no hang
            client.ping()
        redis_server.start()
        assert client.ping() is True
        assert client.execute("SET", "k", "again") == "OK"
        assert client.execute("GET", "k") == "again"
    finally:
        client.close()
        if not redis_server.running:
            redis_server.start()


def test_a_connection_closed_by_a_restart_is_replaced_first(redis_server, redis_url):
    """A restart between two calls: the kept connection, closed by Redis, is replaced
    before the command is sent, so the next call works. (The router must see a queue that
    is gone as a refused connection: docs/decisions.md, "Asleep → awake on a request".)"""
    client = RespClient(redis_url)
    try:
        assert client.ping()
        redis_server.stop()
        redis_server.start()
        assert client.ping() is True
        assert client.execute("SET", "k", "after the restart") == "OK"
    finally:
        client.close()
        if not redis_server.running:
            redis_server.start()


# --- URLs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@127.0.0.1:7000/2", ("127.0.0.1", 7000, None, "pw", 2, False)),
        ("redis://127.0.0.1", ("127.0.0.1", 6379, None, None, 0, False)),
        ("redis://", ("127.0.0.1", 6379, None, None, 0, False)),
        ("redis://h.example:1/0", ("h.example", 1, None, None, 0, False)),
        ("rediss://user:p%40ss%3Aw@h:6380/15", ("h", 6380, "user", "p@ss:w", 15, True)),
    ],
)
def test_url_parsing(url, expected):
    client = RespClient(url)
    assert (
        client.host,
        client.port,
        client.username,
        client.password,
        client.db,
        client.tls,
    ) == expected


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "", "unix:///tmp/redis.sock"]
)
def test_bad_scheme(url):
    with pytest.raises(ValueError, match="redis URL"):
        RespClient(url)


def reset_password(port: int, password: str) -> None:
    admin = redis_py.Redis(port=port, password=password)
    try:
        admin.config_set("requirepass", "")
    finally:
        admin.close()


def test_password_and_db_against_the_server(redis_server, redis_client):
    redis_client.config_set("requirepass", "s3cret")
    try:
        client = RespClient(f"redis://:s3cret@127.0.0.1:{redis_server.port}/2")
        assert client.execute("SET", "k", "in-db-2") == "OK"
        with_user = RespClient(f"redis://default:s3cret@127.0.0.1:{redis_server.port}/2")
        assert with_user.execute("GET", "k") == "in-db-2"
        client.close()
        with_user.close()
        for db, expected in ((0, None), (2, "in-db-2")):
            admin = redis_py.Redis(
                port=redis_server.port, password="s3cret", db=db, decode_responses=True
            )
            try:
                assert admin.get("k") == expected
            finally:
                admin.close()
        without = RespClient(f"redis://127.0.0.1:{redis_server.port}/0")
        with pytest.raises(RedisReplyError, match="NOAUTH"):
            without.ping()
        without.close()
    finally:
        reset_password(redis_server.port, "s3cret")
    assert redis_client.ping()


def test_wrong_password_raises_reply_error(redis_server, redis_client):
    redis_client.config_set("requirepass", "s3cret")
    try:
        client = RespClient(f"redis://:wrong@127.0.0.1:{redis_server.port}/0")
        with pytest.raises(RedisReplyError, match="WRONGPASS"):
            client.ping()
        client.close()
    finally:
        reset_password(redis_server.port, "s3cret")


def test_failed_select_does_not_leave_a_connection_on_db_0(redis_server, redis_client):
    client = RespClient(f"redis://127.0.0.1:{redis_server.port}/99")
    try:
        with pytest.raises(RedisReplyError, match="DB index"):
            client.execute("SET", "k", "meant-for-db-99")
        with contextlib.suppress(RedisReplyError, RedisUnavailable):
            client.execute("SET", "k", "meant-for-db-99")
        assert redis_client.get("k") is None  # nothing written to db 0
    finally:
        client.close()


# --- Redis' clock ------------------------------------------------------------------
def _time_calls(redis_client) -> int:
    return int(redis_client.info("commandstats").get("cmdstat_time", {}).get("calls", 0))


@pytest.mark.parametrize("skew_s", [-7200.0, 0.0, 7200.0])
def test_redis_time_is_estimated_from_one_time_per_connection(redis_url, redis_client, skew_s):
    redis_client.config_resetstat()
    client = RespClient(redis_url, clock=lambda: time.time() + skew_s)
    try:
        estimates = [client.redis_time_ms() for _ in range(3)]
        assert _time_calls(redis_client) == 1  # measured once, then computed
        seconds, micros = redis_client.time()
        actual = seconds * 1000 + micros / 1000
        assert all(abs(actual - estimate) < 100 for estimate in estimates)
        client.close()
        client.redis_time_ms()  # a new connection measures again
        assert _time_calls(redis_client) == 3  # ours, the reference's, the new connection's
    finally:
        client.close()


def test_redis_time_on_a_silent_server_is_unavailable():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the handshake completes; TIME is never answered
        client = RespClient(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout=0.2)
        with pytest.raises(RedisUnavailable):
            client.redis_time_ms()
