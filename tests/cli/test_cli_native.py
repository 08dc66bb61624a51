"""`tlops` behaving like the command-line tools people know (issue 22, "The CLI"): help on
bare `tlops`, "did you mean", quiet on a closed pipe, --api-url checked, usage errors
reported as usage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tlops.cli import main, session
from tlops.cli.exits import ExitCode

TLOPS = Path(sys.executable).parent / "tlops"


def test_bare_tlops_prints_the_help_and_exits_0(capsys):
    """0, not argparse's 2: nothing was called wrong, the help is what a bare `tlops` asks
    for (issue 22's "Done when": `tlops` alone prints help and exits 0)."""
    assert main([]) == ExitCode.OK
    printed = capsys.readouterr()
    assert printed.out.startswith("usage: tlops")
    assert "exit codes:" in printed.out  # the whole help, not the usage line alone
    assert printed.err == ""


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["infr"], "tlops: error: unknown command 'infr'; did you mean 'infer'?"),
        (["local", "upp"], "tlops local: error: unknown command 'upp'; did you mean 'up'?"),
    ],
)
def test_a_mistyped_command_says_which_was_meant(capsys, argv, said):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == ExitCode.USAGE
    assert said in capsys.readouterr().err.splitlines()


def test_a_closed_stdout_ends_quietly():
    """The reader is gone before tlops writes (as `| head -1` once head has its line): no
    BrokenPipeError traceback, and none when Python flushes stdout at exit."""
    command = subprocess.Popen(
        [TLOPS, "completion", "bash"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert command.stdout is not None and command.stderr is not None
    command.stdout.close()  # before the child has written anything
    err = command.stderr.read()
    assert command.wait(timeout=60) == ExitCode.OK
    assert err == b""


@pytest.mark.parametrize("url", ["not-a-url", "http://127.0.0.1:PORT", "127.0.0.1:8080"])
def test_an_api_url_that_is_not_a_url_is_refused_before_any_login(monkeypatch, capsys, url):
    monkeypatch.delenv("TL_AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("TL_TOKEN", raising=False)
    monkeypatch.setenv("TL_HOSTED_UI_URL", "https://auth.example.com")
    monkeypatch.setenv("TL_CLIENT_ID", "client")

    def no_login(ui):
        raise AssertionError("logged in with an --api-url that is not a URL")

    monkeypatch.setattr(session, "login_tokens", no_login)
    assert main(["infer", "hello", "--api-url", url]) == ExitCode.SETUP
    err = capsys.readouterr().err
    assert f"--api-url: {url!r} is not a URL" in err
    assert "https://" in err and "http://127.0.0.1:" in err  # what a URL looks like


@pytest.mark.parametrize("argv", [["logs", "query"], ["local", "logs", "query"]])
def test_logs_query_without_a_name_is_a_usage_error(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"{' '.join(['tlops', *argv[:-1]])}: error: query needs the NAME" in err
    assert "tlops: tlops" not in err
