"""tlops.tooling.packer against the real packer binary, on a template that builds nothing
(the `null` builder without a machine, shell-local steps on this host)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tlops.tooling import packer

TINY = Path(__file__).parent / "fixtures" / "tiny"
REPO_PACKER = Path(__file__).resolve().parents[2] / "packer"


def test_a_build_returns_this_runs_artifact_and_streams_every_line():
    lines: list[str] = []
    artifacts = packer.build(TINY, variables={"greeting": "bonjour"}, on_line=lines.append)
    assert [(a.name, a.builder_type, a.custom_data) for a in artifacts] == [
        ("tiny", "null", {"greeting": "bonjour"})
    ]
    assert artifacts[0].run_uuid
    text = "\n".join(lines)
    assert "first line: bonjour" in text
    assert text.index("first line") < text.index("last line") < text.index("Builds finished")


def test_lines_reach_the_caller_while_packer_still_runs(tmp_path):
    """The build waits for a file that only the line callback writes: without streaming,
    the callback would see the line after the build ended, and the build would time out."""
    go = tmp_path / "go"
    step = f"for i in $(seq 100); do [ -e {go} ] && exit 0; sleep 0.1; done; exit 9"

    def on_line(line: str) -> None:
        if "first line" in line:
            go.touch()

    artifacts = packer.build(TINY, variables={"step": step}, on_line=on_line, timeout=60)
    assert len(artifacts) == 1


def test_a_sensitive_variable_never_reaches_the_output():
    lines: list[str] = []
    packer.build(TINY, variables={"secret": "hunter2-xyz"}, on_line=lines.append)
    assert not [line for line in lines if "hunter2-xyz" in line]
    assert any("the secret is <sensitive>" in line for line in lines)


def test_variables_travel_in_the_environment_not_on_the_command_line():
    env = packer.variable_env({"greeting": "hi", "gpu": False, "size": 30, "tags": {"a": "b"}})
    assert env == {
        "PKR_VAR_greeting": "hi",
        "PKR_VAR_gpu": "false",
        "PKR_VAR_size": "30",
        "PKR_VAR_tags": '{"a": "b"}',
    }


def test_a_failing_build_raises_with_the_last_lines_and_leaves_no_artifact():
    with pytest.raises(packer.PackerError) as failure:
        packer.build(TINY, variables={"step": "echo 'step broke' >&2; exit 7"})
    assert not isinstance(failure.value, packer.PackerTimeout)
    assert "exit code 1" in str(failure.value)
    assert any("step broke" in line for line in failure.value.tail)
    assert "step broke" in str(failure.value)


def test_a_build_past_its_timeout_is_interrupted_and_nothing_it_started_survives(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    step = f"sh -c 'echo $$ > {pid_file}; exec sleep 300'"
    with pytest.raises(packer.PackerTimeout) as timed_out:
        packer.build(TINY, variables={"step": step}, timeout=3, grace_s=5)
    assert "timeout of 3 s" in str(timed_out.value)
    assert any("first line" in line for line in timed_out.value.tail)
    sleeper = int(pid_file.read_text())
    for _ in range(50):  # it may take a moment to be reaped by init
        try:
            os.kill(sleeper, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {sleeper} started by the build outlived it")


def test_an_undeclared_variable_is_refused_before_packer_runs():
    lines: list[str] = []
    with pytest.raises(packer.PackerError, match="declares no variable greting"):
        packer.build(TINY, variables={"greting": "typo"}, on_line=lines.append)
    assert lines == []


def test_an_only_that_matches_no_source_is_an_error_not_a_success():
    with pytest.raises(packer.PackerError, match="made no artifact"):
        packer.build(TINY, only=["wrapper.null.other"])


def test_only_selects_a_source_by_build_type_and_name():
    artifacts = packer.build(TINY, only=["wrapper.null.tiny"])
    assert [a.name for a in artifacts] == ["tiny"]


def test_a_template_without_a_manifest_variable_is_refused(tmp_path):
    (tmp_path / "t.pkr.hcl").write_text('source "null" "x" {\n  communicator = "none"\n}\n')
    with pytest.raises(packer.PackerError, match="manifest_path"):
        packer.build(tmp_path)


def test_a_missing_binary_says_how_to_install_it():
    with pytest.raises(packer.PackerError, match="make setup"):
        packer.build(TINY, binary="packer-that-is-not-there")


def test_the_version_is_read_from_the_binary():
    assert packer.version() >= (1, 6, 0)


def test_an_old_packer_gets_a_copy_without_what_it_predates(tmp_path):
    staged = packer.stage(REPO_PACKER, (1, 6, 6), tmp_path)
    assert staged == tmp_path / "packer"
    assert not (staged / packer.PLUGINS_FILE).exists()
    assert "metadata_options" not in (staged / "source.pkr.hcl").read_text()
    assert "metadata_options" in (REPO_PACKER / "source.pkr.hcl").read_text()
    setting = re.compile(r"^\s*temporary_security_group_source_public_ip\s*=", re.MULTILINE)
    assert setting.search((REPO_PACKER / "source.pkr.hcl").read_text())
    assert not setting.search((staged / "source.pkr.hcl").read_text())
    # everything else is the same, and the repository beside it is reachable
    kept = {p.name for p in REPO_PACKER.rglob("*") if p.name != packer.PLUGINS_FILE}
    assert {p.name for p in staged.rglob("*")} == kept
    assert (staged / "build.pkr.hcl").read_text() == (REPO_PACKER / "build.pkr.hcl").read_text()
    assert (staged / ".." / "ansible.cfg").resolve() == REPO_PACKER.parent / "ansible.cfg"


@pytest.mark.parametrize(
    "only", [(), ("node.amazon-ebs.gpu",), ("node.null.local", "gpu"), ("node.*",)]
)
def test_an_old_packer_never_builds_the_aws_image(only):
    # its copy has lost IMDSv2 and the SSH restriction: the instance would be open to all
    with pytest.raises(packer.PackerError, match="cannot build amazon-ebs safely"):
        packer.check_buildable(REPO_PACKER, (1, 6, 6), only)


def test_an_old_packer_still_builds_the_local_bake_and_templates_without_amazon():
    packer.check_buildable(REPO_PACKER, (1, 6, 6), ["node.null.local"])
    packer.check_buildable(TINY, (1, 6, 6), [])
    packer.check_buildable(REPO_PACKER, (1, 11, 2), [])


def test_a_recent_packer_reads_the_template_where_it_is(tmp_path):
    assert packer.stage(REPO_PACKER, (1, 11, 2), tmp_path) == REPO_PACKER.resolve()
    assert list(tmp_path.iterdir()) == []


def test_an_amazon_artifact_names_its_images_by_region():
    artifact = packer.Artifact(
        "gpu", "amazon-ebs", "eu-west-1:ami-0abc,us-east-1:ami-0def", {}, "uuid"
    )
    assert artifact.images == {"eu-west-1": "ami-0abc", "us-east-1": "ami-0def"}
    assert artifact.as_dict()["images"] == artifact.images
    assert packer.Artifact("tiny", "null", "Null", {}, "uuid").images == {}


def test_the_command_line_builds_and_prints_the_artifact(capsys):
    assert packer.main(["build", str(TINY), "--var", "greeting=salut"]) == 0
    out = capsys.readouterr().out
    assert '"greeting": "salut"' in out.splitlines()[-1]


def test_the_command_line_reports_a_failure_in_one_line(capsys):
    assert packer.main(["build", str(TINY), "--var", "step=exit 3"]) == 1
    assert capsys.readouterr().err.startswith("packer: packer build failed")


def test_the_command_line_checks_format_and_validates(capsys, tmp_path):
    assert packer.main(["fmt-check", str(TINY)]) == 0
    assert packer.main(["validate", str(TINY), "--var", "greeting=hej"]) == 0
    (tmp_path / "bad.pkr.hcl").write_text('variable "x" {\ntype = string\n}\n')
    assert packer.main(["fmt-check", str(tmp_path)]) == 1
    assert "not formatted" in capsys.readouterr().out


def test_the_command_line_refuses_a_variable_without_a_value():
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        packer.main(["validate", str(TINY), "--var", "greeting"])
