"""tl_lambda against the stand-in (moto) and, for what only AWS does, a stubbed client.

The zips come from tlops.tooling.lambda_zip, so the packaging tests live here too (their names hold
"zip": `pytest -k "packag or zip"` selects them).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from ansible_collections.amazon.aws.plugins.module_utils import cloud
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from tlops.tooling import lambda_zip as packaging

from .conftest import ACCOUNT_ID, REGION, STUB_ARGS
from .harness import PACKAGE, REPO, ModuleFailed, code, run_module

NAME = "tl-test-fn"
TAGS = {"Project": "tinyllama", "Role": "router"}
ROUTER = REPO / "lambda_src" / "router"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{NAME}"
CODE = f"{PACKAGE}.module_utils.tl_lambda"  # the module's code, as the module imports it


@pytest.fixture(autouse=True)
def pauses(monkeypatch) -> list[float]:
    """Nothing sleeps (the Stubber answers at once): polls of an update in progress wait 0 s,
    and the pauses between tries of a role IAM has not propagated yet are recorded."""
    apply = importlib.import_module(f"{CODE}.apply")
    monkeypatch.setattr(apply, "WAIT_DELAY", 0.0)
    recorded: list[float] = []
    monkeypatch.setattr(apply, "PAUSE", recorded.append)
    return recorded


@pytest.fixture
def role_arn(aws) -> str:
    """An execution role: the stand-in refuses a function whose role does not exist."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    made = aws("iam").create_role(
        RoleName="tl-test-role", AssumeRolePolicyDocument=json.dumps(trust)
    )
    return made["Role"]["Arn"]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small function: a handler importing tlops.contract, a data file, a stale cache."""
    src = tmp_path / "fn"
    (src / "__pycache__").mkdir(parents=True)
    (src / "handler.py").write_text(
        "from tlops import contract\n\n\n"
        "def lambda_handler(event, context):\n"
        "    return {'statusCode': 200, 'body': str(contract.PROMPT_MAX_BYTES)}\n"
    )
    (src / "messages.txt").write_text("hello\n")
    (src / "__pycache__" / "stale.cpython-312.pyc").write_bytes(b"not shipped")
    return src


@pytest.fixture
def args(aws_args, role_arn, source) -> dict:
    return {
        **aws_args,
        "name": NAME,
        "source": str(source),
        "role_arn": role_arn,
        "environment": {"TL_MODE": "test"},
        "tags": TAGS,
    }


def sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def versions(lam, name: str = NAME) -> list[str]:
    listed = lam.list_versions_by_function(FunctionName=name)["Versions"]
    return sorted((v["Version"] for v in listed if v["Version"] != "$LATEST"), key=int)


def alias_version(lam, alias: str = "prod", name: str = NAME) -> str:
    return lam.get_alias(FunctionName=name, Name=alias)["FunctionVersion"]


def warnings_of(result: dict) -> list[str]:
    """The warnings' texts (ansible-core ≥ 2.19 returns them as structured events)."""
    return [
        w if isinstance(w, str) else w.get("event", w).get("msg", str(w))
        for w in result.get("warnings", [])
    ]


def change_code(source: Path, n: int) -> None:
    (source / "revision.py").write_text(f"REVISION = {n}\n")


# --- life cycle on the stand-in -------------------------------------------------------
def test_life_cycle(aws, args, source):
    lam = aws("lambda")
    planned = run_module("tl_lambda", args, check=True)
    assert planned["changed"] and planned["published"]
    assert planned["diff"]["before"] == {}
    assert planned["diff"]["after"]["alias_version"] == "(new version)"
    assert lam.list_functions()["Functions"] == []

    made = run_module("tl_lambda", args)
    assert made["changed"] and made["published"] and made["version"] == "1"
    config = lam.get_function_configuration(FunctionName=NAME)
    assert config["CodeSha256"] == made["code_sha256"] == planned["code_sha256"]
    assert config["Handler"] == "handler.lambda_handler" and config["Runtime"] == "python3.12"
    assert (config["MemorySize"], config["Timeout"]) == (512, 10)
    assert config["TracingConfig"]["Mode"] == "Active"
    assert config["Architectures"] == ["x86_64"]
    assert config["Environment"]["Variables"] == {"TL_MODE": "test"}
    assert lam.list_tags(Resource=made["function_arn"])["Tags"] == TAGS
    assert versions(lam) == ["1"] and alias_version(lam) == "1"
    assert made["alias_arn"].endswith(f"function:{NAME}:prod")
    assert made["configuration"]["memory_size"] == 512

    again = run_module("tl_lambda", args)
    assert not again["changed"] and not again["published"]
    assert again["code_sha256"] == made["code_sha256"] and versions(lam) == ["1"]

    planned = run_module("tl_lambda", {**args, "memory_size": 256}, check=True)
    assert planned["changed"] and planned["version"] is None
    assert lam.get_function_configuration(FunctionName=NAME)["MemorySize"] == 512
    bigger = run_module("tl_lambda", {**args, "memory_size": 256})
    assert bigger["changed"] and bigger["published"] and bigger["version"] == "2"
    assert bigger["diff"]["before"]["configuration"]["memory_size"] == 512
    assert bigger["diff"]["after"]["configuration"]["memory_size"] == 256
    assert bigger["diff"]["before"]["alias_version"] == "1"
    assert bigger["diff"]["after"]["alias_version"] == "2"
    assert lam.get_function_configuration(FunctionName=NAME, Qualifier="2")["MemorySize"] == 256
    assert alias_version(lam) == "2"

    retagged = run_module(
        "tl_lambda", {**args, "memory_size": 256, "tags": {"Project": "tinyllama", "Owner": "ops"}}
    )
    assert retagged["changed"] and not retagged["published"]
    assert retagged["diff"]["after"]["tags"] == {"Project": "tinyllama", "Owner": "ops"}
    assert lam.list_tags(Resource=bigger["function_arn"])["Tags"] == {
        "Project": "tinyllama",
        "Owner": "ops",
    }
    kept = run_module(
        "tl_lambda",
        {**args, "memory_size": 256, "tags": {"Extra": "1"}, "purge_tags": False},
    )
    assert kept["changed"]
    assert lam.list_tags(Resource=bigger["function_arn"])["Tags"] == {
        "Project": "tinyllama",
        "Owner": "ops",
        "Extra": "1",
    }

    gone_args = {**args, "state": "absent", "tags": {"Project": "tinyllama"}}
    assert run_module("tl_lambda", gone_args, check=True)["changed"]
    assert lam.get_function(FunctionName=NAME)
    gone = run_module("tl_lambda", gone_args)
    assert gone["changed"] and gone["diff"]["after"] == {}
    assert lam.list_functions()["Functions"] == []
    assert not run_module("tl_lambda", gone_args)["changed"]


def test_the_zip_holds_the_source_dir_and_the_tlops_parts_it_imports(source):
    built = packaging.build_source_zip(source)
    names = set(zipfile.ZipFile(io.BytesIO(built.data)).namelist())
    assert {
        "handler.py",
        "messages.txt",
        "tlops/__init__.py",
        "tlops/contract/__init__.py",
    } <= names
    assert "__pycache__/handler.cpython-312.pyc" in names  # Lambda's filesystem is read-only
    assert "__pycache__/stale.cpython-312.pyc" not in names
    assert not [n for n in names if n.startswith("tlops/edge/")]  # not imported by this handler
    assert built.code_sha256 == sha(built.data)


def test_code_change_publishes_and_moves_the_alias(aws, args, source):
    lam = aws("lambda")
    first = run_module("tl_lambda", args)
    change_code(source, 1)
    second = run_module("tl_lambda", args)
    assert second["changed"] and second["published"]
    assert second["code_sha256"] != first["code_sha256"]
    assert second["diff"]["before"]["code_sha256"] == first["code_sha256"]
    assert second["diff"]["after"]["code_sha256"] == second["code_sha256"]
    assert versions(lam) == ["1", "2"] and alias_version(lam) == "2"
    assert (
        lam.get_function_configuration(FunctionName=NAME, Qualifier="2")["CodeSha256"]
        == (second["code_sha256"])
    )
    assert not run_module("tl_lambda", args)["changed"]


def test_an_environment_change_alone_publishes(aws, args):
    lam = aws("lambda")
    first = run_module("tl_lambda", args)
    changed = run_module("tl_lambda", {**args, "environment": {"TL_MODE": "prod"}})
    assert changed["changed"] and changed["published"] and changed["version"] == "2"
    assert changed["code_sha256"] == first["code_sha256"]
    assert changed["diff"]["before"]["configuration"]["environment"] == {"TL_MODE": "test"}
    assert changed["configuration"]["environment"] == {"TL_MODE": "prod"}
    version_2 = lam.get_function_configuration(FunctionName=NAME, Qualifier="2")
    assert version_2["Environment"]["Variables"] == {"TL_MODE": "prod"}
    assert alias_version(lam) == "2"


def test_a_timeout_change_alone_is_applied_and_published(aws, args):
    """Timeout is a field of UpdateFunctionConfiguration, 1 to 900 seconds
    (https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionConfiguration.html),
    which the stand-in applies: no warning that it was ignored."""
    lam = aws("lambda")
    first = run_module("tl_lambda", args)
    longer = run_module("tl_lambda", {**args, "timeout": 30})
    assert longer["changed"] and longer["published"] and longer["version"] == "2"
    assert longer["code_sha256"] == first["code_sha256"]
    assert longer["diff"]["before"]["configuration"]["timeout"] == 10
    assert longer["configuration"]["timeout"] == 30
    assert not [w for w in warnings_of(longer) if "timeout" in w]
    assert lam.get_function_configuration(FunctionName=NAME)["Timeout"] == 30
    assert lam.get_function_configuration(FunctionName=NAME, Qualifier="prod")["Timeout"] == 30
    assert not run_module("tl_lambda", {**args, "timeout": 30})["changed"]


def test_the_function_moves_into_a_vpc_and_out_again(aws, args):
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="router", Description="r", VpcId=vpc)["GroupId"]
    run_module("tl_lambda", args)
    inside = {**args, "vpc_subnet_ids": [subnet], "vpc_security_group_ids": [group]}
    moved = run_module("tl_lambda", inside)
    assert moved["changed"] and moved["published"]
    assert moved["configuration"]["vpc_subnet_ids"] == [subnet]
    assert moved["diff"]["before"]["configuration"]["vpc_subnet_ids"] == []
    config = aws("lambda").get_function_configuration(FunctionName=NAME, Qualifier="prod")
    assert config["VpcConfig"]["SubnetIds"] == [subnet]
    assert config["VpcConfig"]["SecurityGroupIds"] == [group]
    assert not run_module("tl_lambda", inside)["changed"]
    out = run_module("tl_lambda", args)
    assert out["changed"] and out["configuration"]["vpc_subnet_ids"] == []


def test_the_router_zip_is_the_same_bytes_and_no_change_twice(aws, args):
    router = {**args, "source": str(ROUTER)}
    first = run_module("tl_lambda", router)
    second = run_module("tl_lambda", router)
    assert not second["changed"] and second["code_sha256"] == first["code_sha256"]
    assert (
        aws("lambda").get_function_configuration(FunctionName=NAME)["CodeSha256"]
        == (first["code_sha256"])
    )
    assert first["code_size"] < packaging.ZIP_LIMIT_BYTES


def test_the_router_zip_is_the_same_bytes_in_another_process():
    """Ansible runs each task in a fresh interpreter (another hash seed, other imports)."""
    here = packaging.build_source_zip(ROUTER)
    code = (
        "import io, json, sys, zipfile; from pathlib import Path; "
        "from tlops.tooling import lambda_zip as packaging; "
        f"built = packaging.build_source_zip(Path({str(ROUTER)!r})); "
        "entries = zipfile.ZipFile(io.BytesIO(built.data)).infolist(); "
        "sys.stdout.write(json.dumps([built.code_sha256, {e.filename: e.CRC for e in entries}]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there, their_entries = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout
    )
    ours = {e.filename: e.CRC for e in zipfile.ZipFile(io.BytesIO(here.data)).infolist()}
    differ = sorted(
        name for name in set(ours) | set(their_entries) if ours.get(name) != their_entries.get(name)
    )
    assert there == here.code_sha256, f"entries that differ: {differ}"
    names = zipfile.ZipFile(io.BytesIO(here.data)).namelist()
    assert "handler.py" in names and "tlops/edge/router.py" in names and "jwt/__init__.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd", ".dylib"))]


def test_build_function_zip_keeps_its_api(tmp_path):
    report = packaging.build_function_zip("router", tmp_path / "router.zip")
    assert report.path.read_bytes() == packaging.build_source_zip(ROUTER).data
    assert report.size == report.path.stat().st_size and "jwt" in report.packages
    bare = packaging.build_function_zip("router", tmp_path / "bare.zip", compile_bytecode=False)
    assert bare.size < report.size
    with pytest.raises(packaging.PackagingError, match="no handler"):
        packaging.build_function_zip("nonexistent", tmp_path / "x.zip")


# --- retention and rollback -----------------------------------------------------------
def test_retention_keeps_the_newest_five(aws, args, source):
    lam = aws("lambda")
    deleted, shas, warnings = [], [], []
    for n in range(7):
        change_code(source, n)
        done = run_module("tl_lambda", args)
        assert done["published"]
        deleted += done["deleted_versions"]
        shas.append(done["code_sha256"])
        warnings += warnings_of(done)
        assert alias_version(lam) == done["version"]
    kept = versions(lam)
    assert len(kept) == 5
    assert deleted == ["1"]  # the 6th publish left six; the 7th is explained below
    # The stand-in numbers a version count+1, so the 7th took number 6 again; the module
    # deleted the stale copy (and said so) so that "6" and the alias resolve to the 7th code.
    # On AWS the survivors would be 3..7.
    assert kept == ["2", "3", "4", "5", "6"]
    assert any("reuses a number" in w for w in warnings)
    newest = lam.get_function_configuration(FunctionName=NAME, Qualifier=kept[-1])
    assert newest["CodeSha256"] == shas[-1]
    held = [
        lam.get_function_configuration(FunctionName=NAME, Qualifier=v)["CodeSha256"] for v in kept
    ]
    assert held == [shas[1], shas[2], shas[3], shas[4], shas[6]]
    assert not run_module("tl_lambda", args)["changed"]


def test_retention_in_check_mode_plans_without_deleting(aws, args, source):
    lam = aws("lambda")
    for n in range(3):
        change_code(source, n)
        run_module("tl_lambda", {**args, "keep_versions": 3})
    change_code(source, 99)
    planned = run_module("tl_lambda", {**args, "keep_versions": 3}, check=True)
    assert planned["changed"] and planned["published"] and planned["deleted_versions"] == ["1"]
    assert planned["diff"]["after"]["versions"] == ["2", "3", "(new version)"]
    assert versions(lam) == ["1", "2", "3"] and alias_version(lam) == "3"


def test_an_aliased_old_version_is_never_deleted(aws, args, source):
    lam = aws("lambda")
    run_module("tl_lambda", {**args, "keep_versions": 2})
    lam.create_alias(FunctionName=NAME, Name="pinned", FunctionVersion="1")
    for n in range(3):
        change_code(source, n)
        done = run_module("tl_lambda", {**args, "keep_versions": 2})
        assert "1" not in done["deleted_versions"]
    assert versions(lam) == ["1", "3", "4"]  # 2 went; 1 stays while "pinned" points at it
    assert alias_version(lam, "pinned") == "1" and alias_version(lam) == "4"


def test_rollback_moves_the_alias_back(aws, args, source):
    lam = aws("lambda")
    first = run_module("tl_lambda", args)
    change_code(source, 1)
    second = run_module("tl_lambda", args)
    rollback = {k: v for k, v in args.items() if k not in ("source", "role_arn")} | {
        "rollback": True
    }

    planned = run_module("tl_lambda", rollback, check=True)
    assert planned["changed"] and planned["version"] == "1" and alias_version(lam) == "2"
    back = run_module("tl_lambda", rollback)
    assert back["changed"] and back["version"] == "1" and not back["published"]
    assert back["code_sha256"] == first["code_sha256"]
    assert back["diff"]["before"]["alias_version"] == "2"
    assert back["diff"]["before"]["code_sha256"] == second["code_sha256"]
    assert alias_version(lam) == "1" and versions(lam) == ["1", "2"]
    assert lam.get_function_configuration(FunctionName=NAME)["CodeSha256"] == second["code_sha256"]

    with pytest.raises(ModuleFailed, match="no published version before it"):
        run_module("tl_lambda", rollback)

    # A deploy afterwards points the alias at the desired code again, without publishing.
    forward = run_module("tl_lambda", args)
    assert forward["changed"] and not forward["published"] and forward["version"] == "2"
    assert alias_version(lam) == "2" and versions(lam) == ["1", "2"]


def test_rollback_of_a_missing_function_fails(aws_args):
    with pytest.raises(ModuleFailed, match="does not exist: nothing to roll back"):
        run_module("tl_lambda", {**aws_args, "name": NAME, "rollback": True})


# --- refusals ---------------------------------------------------------------------------
def test_a_native_library_in_the_source_is_refused(aws, args, source):
    (source / "vendor").mkdir()
    (source / "vendor" / "_speedups.cpython-312-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_lambda", args, check=True)
    assert "_speedups.cpython-312-x86_64-linux-gnu.so" in failed.value.result["msg"]
    assert "pure Python" in failed.value.result["msg"]
    assert aws("lambda").list_functions()["Functions"] == []


def test_a_zip_over_5_mib_is_refused(aws, args, source):
    (source / "blob.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_lambda", args)
    message = failed.value.result["msg"]
    assert "over the 5 MiB limit" in message and "blob.bin" in message
    assert aws("lambda").list_functions()["Functions"] == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"keep_versions": 0}, "keep_versions"),
        ({"role_arn": None}, "role_arn is required"),
        ({"source": None}, "source is required"),
        ({"memory_size": 64}, "memory_size"),
        ({"timeout": 1000}, "timeout"),
        ({"environment": {"PORT": 6379}}, "environment.PORT"),
        ({"alias": "7"}, "alias"),
        ({"handler": "lambda_handler"}, "handler"),
        ({"handler": "app.lambda_handler"}, "app.py"),
        ({"runtime": "nodejs20.x"}, "not a Python runtime"),
        ({"state": "absent", "rollback": True}, "rollback applies to state=present"),
        ({"vpc_subnet_ids": ["subnet-1"]}, "vpc_subnet_ids and vpc_security_group_ids"),
        ({"propagation_timeout": -1}, "propagation_timeout"),
    ],
)
def test_bad_input_fails_naming_the_option(args, change, named):
    with pytest.raises(ModuleFailed, match=named):
        run_module("tl_lambda", {k: v for k, v in {**args, **change}.items() if v is not None})


def test_without_tlops_it_says_to_use_the_project_venv(args, monkeypatch):
    monkeypatch.setattr(importlib.import_module(f"{CODE}.build"), "packaging", None)
    with pytest.raises(ModuleFailed, match=r"\.venv.*make setup"):
        run_module("tl_lambda", args)


def test_absent_leaves_an_untagged_look_alike_alone(aws, args, role_arn):
    lam = aws("lambda")
    lam.create_function(
        FunctionName=NAME,
        Runtime="python3.12",
        Role=role_arn,
        Handler="handler.lambda_handler",
        Code={"ZipFile": packaging.build_source_zip(ROUTER).data},
        Tags={"Project": "someone-else"},
    )
    done = run_module("tl_lambda", {**args, "state": "absent", "tags": {"Project": "tinyllama"}})
    assert not done["changed"]
    assert any("not deleted" in w and "Project=tinyllama" in w for w in warnings_of(done))
    assert lam.get_function(FunctionName=NAME)["Configuration"]["FunctionName"] == NAME


def test_an_update_the_stand_in_ignores_is_warned_not_reported(aws, args):
    lam = aws("lambda")
    run_module("tl_lambda", args)
    done = run_module("tl_lambda", {**args, "tracing_mode": "PassThrough"})
    assert not done["changed"] and not done["published"]
    assert any("TracingConfig" in w and "stand-in" in w for w in warnings_of(done))
    assert lam.get_function_configuration(FunctionName=NAME)["TracingConfig"]["Mode"] == "Active"
    assert versions(lam) == ["1"]


# --- what only AWS does: a stubbed client ---------------------------------------------
def _config(code_sha: str, **overrides) -> dict:
    config = {
        "FunctionName": NAME,
        "FunctionArn": ARN,
        "Runtime": "python3.12",
        "Role": f"arn:aws:iam::{ACCOUNT_ID}:role/tl-test-role",
        "Handler": "handler.lambda_handler",
        "CodeSize": 100,
        "Description": "",
        "Timeout": 10,
        "MemorySize": 512,
        "CodeSha256": code_sha,
        "Version": "$LATEST",
        "Environment": {"Variables": {"TL_MODE": "test"}},
        "TracingConfig": {"Mode": "Active"},
        "Architectures": ["x86_64"],
        "State": "Active",
        "LastUpdateStatus": "Successful",
    }
    return {**config, **overrides}


@pytest.fixture
def stub_args(source) -> dict:
    return {
        **STUB_ARGS,
        "name": NAME,
        "source": str(source),
        "role_arn": f"arn:aws:iam::{ACCOUNT_ID}:role/tl-test-role",
        "environment": {"TL_MODE": "test"},
        "tags": TAGS,
    }


def test_each_update_in_progress_is_waited_for(stubbed, stub_args, source):
    """AWS refuses an update while one is in progress: code, wait, configuration, wait, publish.
    The Stubber answers in order, so any call out of that order fails the test."""
    lam = stubbed("lambda")
    new_sha = packaging.build_source_zip(source).code_sha256
    lam.add_response(
        "get_function", {"Configuration": _config("old="), "Tags": TAGS}, {"FunctionName": NAME}
    )
    lam.add_response(
        "list_versions_by_function",
        {"Versions": [_config("old="), _config("old=", Version="1", FunctionArn=f"{ARN}:1")]},
        {"FunctionName": NAME},
    )
    prod = {"AliasArn": f"{ARN}:prod", "Name": "prod", "FunctionVersion": "1"}
    lam.add_response("list_aliases", {"Aliases": [prod]}, {"FunctionName": NAME})
    lam.add_response(
        "update_function_code",
        _config(new_sha, LastUpdateStatus="InProgress"),
        {"FunctionName": NAME, "ZipFile": ANY, "Architectures": ["x86_64"], "Publish": False},
    )
    for status in ("InProgress", "InProgress", "Successful"):
        lam.add_response(
            "get_function_configuration",
            _config(new_sha, LastUpdateStatus=status),
            {"FunctionName": NAME},
        )
    lam.add_response(
        "update_function_configuration",
        _config(new_sha, MemorySize=256, LastUpdateStatus="InProgress"),
        {
            "FunctionName": NAME,
            "Role": ANY,
            "Handler": "handler.lambda_handler",
            "Runtime": "python3.12",
            "MemorySize": 256,
            "Timeout": 10,
            "Environment": {"Variables": {"TL_MODE": "test"}},
            "TracingConfig": {"Mode": "Active"},
            "Description": "",
            "VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []},
        },
    )
    for status in ("InProgress", "Successful"):
        lam.add_response(
            "get_function_configuration",
            _config(new_sha, MemorySize=256, LastUpdateStatus=status),
            {"FunctionName": NAME},
        )
    lam.add_response(
        "publish_version",
        _config(new_sha, MemorySize=256, Version="2", FunctionArn=f"{ARN}:2"),
        {"FunctionName": NAME, "CodeSha256": new_sha, "Description": ""},
    )
    lam.add_response(
        "update_alias",
        {**prod, "FunctionVersion": "2"},
        {"FunctionName": NAME, "Name": "prod", "FunctionVersion": "2"},
    )
    done = run_module("tl_lambda", {**stub_args, "memory_size": 256})
    assert done["changed"] and done["published"] and done["version"] == "2"
    assert done["code_sha256"] == new_sha and done["deleted_versions"] == []
    assert done["configuration"]["memory_size"] == 256
    assert done["diff"]["before"]["configuration"]["memory_size"] == 512


def test_a_new_role_is_waited_for_until_lambda_can_assume_it(stubbed, stub_args, source, pauses):
    """IAM is eventually consistent: AWS refuses a role made a moment ago, for a while."""
    lam = stubbed("lambda")
    sha_ = packaging.build_source_zip(source).code_sha256
    lam.add_client_error("get_function", "ResourceNotFoundException", "Function not found", 404)
    lam.add_client_error(
        "create_function",
        "InvalidParameterValueException",
        "The role defined for the function cannot be assumed by Lambda.",
        400,
    )
    lam.add_response("create_function", _config(sha_, State="Pending"), None)
    lam.add_response("get_function_configuration", _config(sha_, State="Pending"), None)
    lam.add_response("get_function_configuration", _config(sha_), None)
    lam.add_response(
        "publish_version",
        _config(sha_, Version="1", FunctionArn=f"{ARN}:1"),
        {"FunctionName": NAME, "CodeSha256": sha_, "Description": ""},
    )
    lam.add_response(
        "create_alias",
        {"AliasArn": f"{ARN}:prod", "Name": "prod", "FunctionVersion": "1"},
        {"FunctionName": NAME, "Name": "prod", "FunctionVersion": "1"},
    )
    lam.add_response("list_tags", {"Tags": TAGS}, {"Resource": ARN})
    done = run_module("tl_lambda", stub_args)
    assert done["changed"] and done["version"] == "1" and done["alias_arn"] == f"{ARN}:prod"
    assert done["diff"]["after"]["tags"] == TAGS
    assert pauses == [2.0]


# --- a role IAM has not propagated yet: recognised, retried with backoff, then explained --------
PROPAGATION = code("tl_lambda.propagation")
REFUSED = "InvalidParameterValueException"
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/tl-test-role"
NO_ENI = (
    "The provided execution role does not have permissions to call CreateNetworkInterface on EC2"
)
NO_XRAY = "The provided execution role does not have permissions to call PutTraceSegments on XRAY"


@pytest.mark.parametrize(
    ("code_", "message", "check"),
    [
        (REFUSED, "The role defined for the function cannot be assumed by Lambda.",
         "its trust policy must let lambda.amazonaws.com assume it (sts:AssumeRole)"),
        (REFUSED, NO_ENI, "its policy must allow ec2:CreateNetworkInterface, "
         "ec2:DescribeNetworkInterfaces and ec2:DeleteNetworkInterface (a function in a VPC)"),
        (REFUSED, NO_XRAY, "its policy must allow xray:PutTraceSegments and "
         "xray:PutTelemetryRecords (active tracing)"),
        (REFUSED, NO_ENI.replace("CreateNetworkInterface", "DescribeSubnets"),
         "its policy must allow ec2:DescribeSubnets"),
        (REFUSED, "Unzipped size must be smaller than 262144000 bytes", None),
        ("AccessDeniedException", NO_ENI, None),
    ],
)  # fmt: skip
def test_which_refusals_are_a_role_not_yet_propagated(code_, message, check):
    refusal = ClientError({"Error": {"Code": code_, "Message": message}}, "CreateFunction")
    assert PROPAGATION.what_to_check(refusal) == check


def test_the_delays_double_up_to_thirty_seconds_and_add_up_to_the_timeout():
    assert PROPAGATION.backoff(90) == [2, 4, 8, 16, 30, 30]
    assert PROPAGATION.backoff(5) == [2, 3]
    assert PROPAGATION.backoff(0) == []


@pytest.fixture
def lambda_stub() -> Iterator[Stubber]:
    client = boto3.client(
        "lambda", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def retrying(stub: Stubber, delays: list[float], slept: list[float]):
    return PROPAGATION.while_propagating(
        stub.client.list_functions, role_arn=ROLE, what="listing", delays=delays,
        sleep=slept.append,
    )  # fmt: skip


def test_the_loop_retries_a_refused_role_after_each_delay_until_lambda_takes_it(lambda_stub):
    lambda_stub.add_client_error("list_functions", REFUSED, NO_ENI, 400)
    lambda_stub.add_client_error("list_functions", REFUSED, NO_XRAY, 400)
    lambda_stub.add_response("list_functions", {"Functions": []})
    slept: list[float] = []
    assert retrying(lambda_stub, [2.0, 4.0, 8.0], slept) == {"Functions": []}
    assert slept == [2.0, 4.0]


def test_past_the_last_delay_the_loop_says_what_the_role_must_allow(lambda_stub):
    for _ in range(3):
        lambda_stub.add_client_error("list_functions", REFUSED, NO_ENI, 400)
    slept: list[float] = []
    with pytest.raises(PROPAGATION.Failure) as failed:
        retrying(lambda_stub, [2.0, 4.0], slept)
    assert slept == [2.0, 4.0]
    message = failed.value.message
    assert message.startswith(f"listing: Lambda still refuses the execution role {ROLE} after 2")
    assert "ec2:CreateNetworkInterface" in message and "propagation_timeout" in message
    assert isinstance(failed.value.exception, ClientError)


def test_any_other_error_is_raised_at_once(lambda_stub):
    lambda_stub.add_client_error("list_functions", REFUSED, "Unzipped size must be smaller", 400)
    slept: list[float] = []
    with pytest.raises(ClientError, match="Unzipped size"):
        retrying(lambda_stub, [2.0, 4.0], slept)
    assert slept == []


def created(lam: Stubber, sha_: str) -> None:
    """What follows a CreateFunction that Lambda took: Active, version 1, alias, tags."""
    lam.add_response("create_function", _config(sha_, State="Pending"), None)
    lam.add_response("get_function_configuration", _config(sha_), None)
    lam.add_response("publish_version", _config(sha_, Version="1", FunctionArn=f"{ARN}:1"), None)
    lam.add_response(
        "create_alias", {"AliasArn": f"{ARN}:prod", "Name": "prod", "FunctionVersion": "1"}, None
    )
    lam.add_response("list_tags", {"Tags": TAGS}, {"Resource": ARN})


def test_a_vpc_function_waits_for_the_roles_network_permissions_to_propagate(
    stubbed, stub_args, source, pauses
):
    """Issue 19, 3a: a brand-new role's inline policy had not reached Lambda; the module
    failed at once (it retried "cannot be assumed" only)."""
    lam = stubbed("lambda")
    sha_ = packaging.build_source_zip(source).code_sha256
    lam.add_client_error("get_function", "ResourceNotFoundException", "Function not found", 404)
    for _ in range(2):
        lam.add_client_error("create_function", REFUSED, NO_ENI, 400)
    created(lam, sha_)
    vpc = {"vpc_subnet_ids": ["subnet-1"], "vpc_security_group_ids": ["sg-1"]}
    done = run_module("tl_lambda", {**stub_args, **vpc})
    assert done["changed"] and done["version"] == "1"
    assert pauses == [2.0, 4.0]


def test_a_refusal_that_outlasts_propagation_timeout_fails_saying_what_to_check(
    stubbed, stub_args, source, pauses
):
    lam = stubbed("lambda")
    lam.add_client_error("get_function", "ResourceNotFoundException", "Function not found", 404)
    for _ in range(3):
        lam.add_client_error("create_function", REFUSED, NO_XRAY, 400)
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_lambda", {**stub_args, "propagation_timeout": 6})
    message = failed.value.result["msg"]
    assert message.startswith(f"creating function {NAME}: Lambda still refuses the execution role")
    assert "after 2 retries over 6 s" in message and "xray:PutTraceSegments" in message
    assert pauses == [2.0, 4.0]


def test_turning_tracing_on_waits_for_the_roles_xray_permissions_to_propagate(
    stubbed, stub_args, source, pauses
):
    """UpdateFunctionConfiguration checks the role as CreateFunction does."""
    lam = stubbed("lambda")
    built = packaging.build_source_zip(source).code_sha256
    before = _config(built, TracingConfig={"Mode": "PassThrough"})
    lam.add_response("get_function", {"Configuration": before, "Tags": TAGS}, None)
    one = _config(built, TracingConfig={"Mode": "PassThrough"}, Version="1")
    lam.add_response("list_versions_by_function", {"Versions": [before, one]}, None)
    prod = {"AliasArn": f"{ARN}:prod", "Name": "prod", "FunctionVersion": "1"}
    lam.add_response("list_aliases", {"Aliases": [prod]}, None)
    lam.add_client_error("update_function_configuration", REFUSED, NO_XRAY, 400)
    lam.add_response(
        "update_function_configuration",
        _config(built, LastUpdateStatus="InProgress"),
        {**dict.fromkeys(("FunctionName", "Role", "Handler", "Runtime", "MemorySize",
                          "Timeout", "Environment", "Description", "VpcConfig"), ANY),
         "TracingConfig": {"Mode": "Active"}},
    )  # fmt: skip
    lam.add_response("get_function_configuration", _config(built), None)
    lam.add_response("publish_version", _config(built, Version="2"), None)
    lam.add_response("update_alias", {**prod, "FunctionVersion": "2"}, None)
    done = run_module("tl_lambda", stub_args)
    assert done["changed"] and done["version"] == "2"
    assert done["configuration"]["tracing_mode"] == "Active"
    assert pauses == [2.0]


def test_a_failed_update_fails_with_the_reason(stubbed, stub_args, source):
    lam = stubbed("lambda")
    new_sha = packaging.build_source_zip(source).code_sha256
    lam.add_response(
        "get_function", {"Configuration": _config("old="), "Tags": TAGS}, {"FunctionName": NAME}
    )
    lam.add_response("list_versions_by_function", {"Versions": []}, {"FunctionName": NAME})
    lam.add_response("list_aliases", {"Aliases": []}, {"FunctionName": NAME})
    lam.add_response("update_function_code", _config(new_sha, LastUpdateStatus="InProgress"), None)
    lam.add_response(
        "get_function_configuration",
        _config(
            new_sha, LastUpdateStatus="Failed", LastUpdateStatusReason="role cannot be assumed"
        ),
        {"FunctionName": NAME},
    )
    with pytest.raises(ModuleFailed, match=r"LastUpdateStatus is Failed.*role cannot be assumed"):
        run_module("tl_lambda", stub_args)


def test_throttling_is_retried_then_succeeds(stubbed, monkeypatch):
    slept = []
    monkeypatch.setattr(cloud.time, "sleep", slept.append)
    lam = stubbed("lambda")
    lam.add_client_error("get_function", "TooManyRequestsException", "Rate exceeded", 429)
    lam.add_response(
        "get_function", {"Configuration": _config("x="), "Tags": TAGS}, {"FunctionName": NAME}
    )
    lam.add_client_error("delete_function", "TooManyRequestsException", "Rate exceeded", 429)
    lam.add_response("delete_function", {}, {"FunctionName": NAME})
    done = run_module(
        "tl_lambda",
        {**STUB_ARGS, "name": NAME, "state": "absent", "tags": {"Project": "tinyllama"}},
    )
    assert done["changed"] and len(slept) == 2


def test_aws_refusing_the_delete_of_an_aliased_version_is_never_asked(stubbed, stub_args, source):
    """AWS refuses to delete a version an alias points to; the module does not try."""
    lam = stubbed("lambda")
    built = packaging.build_source_zip(source).code_sha256
    listed = [_config(built)] + [
        _config(f"v{n}=", Version=str(n), FunctionArn=f"{ARN}:{n}") for n in (1, 2, 3)
    ]
    listed[-1]["CodeSha256"] = built
    lam.add_response(
        "get_function", {"Configuration": _config(built), "Tags": TAGS}, {"FunctionName": NAME}
    )
    lam.add_response("list_versions_by_function", {"Versions": listed}, {"FunctionName": NAME})
    aliases = [
        {"AliasArn": f"{ARN}:prod", "Name": "prod", "FunctionVersion": "3"},
        {
            "AliasArn": f"{ARN}:canary",
            "Name": "canary",
            "FunctionVersion": "3",
            "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.1}},
        },
    ]
    lam.add_response("list_aliases", {"Aliases": aliases}, {"FunctionName": NAME})
    lam.add_response("delete_function", {}, {"FunctionName": NAME, "Qualifier": "2"})
    done = run_module("tl_lambda", {**stub_args, "keep_versions": 1})
    assert done["changed"] and not done["published"] and done["deleted_versions"] == ["2"]
