"""The `tlops` parser as a new user meets it: --version, help on everything, examples, the
exit-code table (and README's copy of it), --env's files, the messages that say what to do."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tlops import contract
from tlops.cli import build_parser, client, exits, main, session, target
from tlops.cli.exits import ExitCode

README = Path(__file__).resolve().parents[2] / "README.md"


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) for the top level and every command and subcommand."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield from commands(command, (*path, name))


def test_version_is_the_installed_packages(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"tlops {metadata.version('tinyllama-ops')}"


def test_every_option_and_positional_has_help():
    missing = [
        (" ".join(path) or "tlops", action.dest)
        for path, parser in commands(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._VersionAction)
        and not (action.help or "").strip()
    ]
    assert missing == []


def test_every_command_has_examples_in_its_help():
    without = [
        " ".join(path)
        for path, parser in commands(build_parser())
        if path
        and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
        and "examples:" not in (parser.epilog or "")
    ]
    assert without == []
    known = {path[0] for path, _ in commands(build_parser()) if path}
    for _, parser in commands(build_parser()):
        for line in (parser.epilog or "").splitlines():
            if line.startswith("  tlops "):
                assert line.split()[1] in known, line


def test_the_idle_help_is_a_sentence_with_range_and_default():
    infer = build_parser()._subparsers._group_actions[0].choices["infer"]
    [idle] = [a for a in infer._actions if a.dest == "idle"]
    assert idle.default == contract.IDLE_DEFAULT_MINUTES
    assert re.fullmatch(r"[A-Z].*\.", idle.help), idle.help
    assert f"from {contract.IDLE_MIN_MINUTES} to {contract.IDLE_MAX_MINUTES}" in idle.help
    assert f"the default is {contract.IDLE_DEFAULT_MINUTES}" in idle.help


# --- exit codes -------------------------------------------------------------------------
def test_only_argparse_exits_2():
    assert ExitCode.USAGE == 2
    assert len({int(code) for code in ExitCode}) == len(ExitCode)
    assert set(exits.MEANING) == set(ExitCode)


def test_help_ends_with_every_exit_code():
    text = build_parser().format_help()
    table = text[text.index("exit codes:") :]
    for code in ExitCode:
        assert re.search(rf"^  {code.value}\s+{code.name.lower()}\s", table, re.MULTILINE), code


def readme_exit_codes() -> dict[int, tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("### Exit codes") :]
    section = section[: section.index("\n#", 1)]
    rows = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| (\d+) \| `(\w+)` \| (.+) \|", line)
        if match:
            rows[int(match[1])] = (match[2], match[3])
    return rows


def test_readmes_exit_code_table_is_the_enums():
    assert readme_exit_codes() == {
        int(code): (code.name.lower(), exits.MEANING[code]) for code in ExitCode
    }


def test_usage_errors_are_2_and_a_setup_problem_is_not(capsys, monkeypatch, tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(["job", "not-a-job-id"])
    assert exited.value.code == ExitCode.USAGE
    assert "is not a job id" in capsys.readouterr().err
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert main(["status", "--env", "dev"]) == ExitCode.SETUP


def test_api_errors_map_to_their_codes():
    assert exits.for_api_error(0) is ExitCode.UNREACHABLE
    assert exits.for_api_error(503) is ExitCode.UNREACHABLE
    assert exits.for_api_error(403) is ExitCode.FAILED


# --- --env ------------------------------------------------------------------------------
def test_env_reads_the_outputs_deploy_yml_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("TLOPS_STATE_DIR", str(tmp_path / "stack"))
    assert target.outputs_file("dev") == tmp_path / "tlops" / "dev" / "outputs.json"
    assert target.outputs_file("local") == tmp_path / "stack" / "outputs.json"
    with pytest.raises(session.CliError, match="--env"):
        target.outputs_file("../etc")
    args = argparse.Namespace(env="dev")
    with pytest.raises(session.CliError) as missing:
        target.resolve(args)
    assert "ansible-playbook -i inventories/dev playbooks/deploy.yml" in str(missing.value)
    written = {"api_url": "https://api.example.com", "hosted_ui_url": "https://auth.example"}
    path = target.outputs_file("dev")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**written, "client_id": "abc", "callback_ports": [53682]}))
    assert target.resolve(args).api_url == "https://api.example.com"
    ui = session.hosted_ui(target.resolve(args).outputs)
    assert (ui.base_url, ui.client_id, tuple(ui.callback_ports)) == (
        "https://auth.example",
        "abc",
        (53682,),
    )


def test_env_without_an_api_url_says_to_deploy_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("TL_API_URL", "http://127.0.0.1:9")  # the shell's: --env's outputs win
    path = target.outputs_file("dev")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"region": "eu-west-1", "api_url": ""}))
    assert main(["infer", "--env", "dev", "hi"]) == ExitCode.SETUP
    assert "--env dev: its deploy outputs name no api_url: run ansible-playbook -i " in (
        capsys.readouterr().err
    )


# --- messages ---------------------------------------------------------------------------
def test_a_remote_api_without_a_token_says_how_to_log_in(monkeypatch):
    for name in ("TL_TOKEN", "TL_HOSTED_UI_URL", "TL_CLIENT_ID", "TL_AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "tlops.local.stack", None)  # importing it would fail
    args = argparse.Namespace(api_url="https://api.example.com", token=None, env=None)
    with pytest.raises(session.CliError) as refused:
        session.api_and_tokens(target.resolve(args), args)
    assert "tlops login" in str(refused.value)
    assert "stand-in tokens go to the local stack's own API only" in str(refused.value)


def test_forbidden_says_the_token_is_fine_but_not_an_admins():
    line = client.describe(
        client.Reply(
            403, {}, {"error": "forbidden", "message": "this route is for the admins group"}
        )
    )
    assert line.startswith("forbidden (403): this route is for the admins group")
    assert "--group admins" in line and "log in again" not in line


def test_completion_scripts_name_the_commands(capsys):
    for shell in ("bash", "zsh"):
        assert main(["completion", shell]) == 0
        script = capsys.readouterr().out
        for word in ("infer", "status", "stop", "--max-tokens", "--env"):
            assert word in script, (shell, word)


def test_completion_for_bash_loads_in_bash(tmp_path):
    script = tmp_path / "tlops.bash"
    run_main = "import sys; from tlops.cli import main; sys.exit(main(sys.argv[1:]))"
    script.write_text(subprocess.run(
        [sys.executable, "-c", run_main, "completion", "bash"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout)  # fmt: skip
    done = subprocess.run(
        ["bash", "-c", f"source {script} && complete -p tlops"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0 and "tlops" in done.stdout, done.stderr


def test_a_demo_whose_stack_fails_half_way_up_brings_it_down(monkeypatch, capsys):
    """`up` may fail after starting some services (a port taken, a hung vLLM): the demo still
    runs `down`, so nothing it started is left running."""
    from tlops.cli import local
    from tlops.local.stack import StackError

    calls = []

    class HalfStartedStack:
        def up(self):
            calls.append("up")
            raise StackError("node did not become ready")

        def down(self):
            calls.append("down")
            return []

    monkeypatch.setattr(local, "LocalStack", HalfStartedStack)
    code = main(["demo"])
    assert calls == ["up", "down"]
    assert code == ExitCode.SETUP
    assert "node did not become ready" in capsys.readouterr().err
