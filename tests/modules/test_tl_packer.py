"""tl_packer with the real packer binary, on the wrapper tests' template (nothing is built)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import STUB_ARGS
from .harness import ModuleFailed, run_module

TINY = Path(__file__).resolve().parents[1] / "tooling" / "fixtures" / "tiny"


def bake_args(tmp_path: Path, **over) -> dict:
    return {**STUB_ARGS, "template_dir": str(TINY), "log_path": str(tmp_path / "bake.log"), **over}


def test_check_mode_builds_nothing(tmp_path):
    result = run_module("tl_packer", bake_args(tmp_path), check=True)
    assert result["changed"] is True
    assert result["artifacts"] == [] and result["artifact"] == {}
    assert not (tmp_path / "bake.log").exists()


def test_a_build_returns_its_artifact_and_logs_every_line(tmp_path):
    result = run_module(
        "tl_packer",
        bake_args(tmp_path, variables={"greeting": "moin"}, only=["wrapper.null.tiny"]),
    )
    assert result["changed"] is False  # the null builder made no image
    artifact = result["artifact"]
    assert (artifact["name"], artifact["builder_type"]) == ("tiny", "null")
    assert artifact["custom_data"] == {"greeting": "moin"}
    assert artifact["images"] == {}
    log = (tmp_path / "bake.log").read_text()
    assert log.index("first line: moin") < log.index("last line") < log.index("Builds finished")


def test_packer_gets_the_plays_region_and_credentials_in_its_environment(tmp_path):
    step = 'echo "region=$AWS_REGION key=$AWS_ACCESS_KEY_ID"'
    run_module("tl_packer", bake_args(tmp_path, variables={"step": step}))
    region, key = STUB_ARGS["region"], STUB_ARGS["access_key"]
    assert f"region={region} key={key}" in (tmp_path / "bake.log").read_text()


def test_sensitive_variables_stay_out_of_the_result_and_the_log(tmp_path):
    result = run_module(
        "tl_packer", bake_args(tmp_path, sensitive_variables={"secret": "tok-9f8e7d"})
    )
    assert "tok-9f8e7d" not in str(result)
    log = (tmp_path / "bake.log").read_text()
    assert "tok-9f8e7d" not in log and "the secret is <sensitive>" in log


def test_a_failed_build_fails_the_task_with_its_last_lines_and_the_log(tmp_path):
    with pytest.raises(ModuleFailed) as failed:
        run_module(
            "tl_packer",
            bake_args(tmp_path, variables={"step": "echo 'validation: no completion'; exit 1"}),
        )
    result = failed.value.result
    assert "packer build failed" in result["msg"]
    assert str(tmp_path / "bake.log") in result["msg"]
    assert any("validation: no completion" in line for line in result["tail"])
    assert result["artifacts"] == []


def test_a_build_past_its_timeout_fails_saying_so(tmp_path):
    with pytest.raises(ModuleFailed, match="timeout of 2 s"):
        run_module(
            "tl_packer",
            bake_args(tmp_path, variables={"step": "sleep 120"}, timeout=2, interrupt_grace=5),
        )


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"variables": {"gretting": "x"}}, "declares no variable gretting"),
        (
            {"variables": {"secret": "plain-1"}, "sensitive_variables": {"secret": "masked-2"}},
            "both set secret",
        ),
        ({"timeout": 0}, "timeout must be at least 1 second"),
        ({"only": ["wrapper.null.nothing"]}, "made no artifact"),
    ],
)
def test_bad_input_fails_naming_what_is_wrong(tmp_path, over, message):
    with pytest.raises(ModuleFailed, match=message):
        run_module("tl_packer", bake_args(tmp_path, **over))
