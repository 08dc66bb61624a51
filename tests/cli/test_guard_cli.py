"""`tlops ops budget-breach`, `tlops cost` and `tlops ops cost-mail` against a moto server on
which deploy.yml made the guard rails (the guardrails role alone: the killer needs nothing
else deployed), with a deployment of tagged resources beside untagged look-alikes.

The breach leaves the killer's mark in the control bucket, stops the node, releases the EIP,
deletes the queue's tagged groups, leaves every look-alike alone, and a second breach
changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from tests.doubles.ec2 import tagged_instance
from tests.doubles.standing_stack import StandingStack
from tlops.cli import main, playbooks
from tlops.cli.exits import ExitCode
from tlops.common import aws
from tlops.control import queue
from tlops.local.services import MotoProcess
from tlops.local.stack import STAND_IN_CREDENTIALS

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=1)]

REGION = "eu-west-1"
PHASES = "guardrails_preflight,guardrails_install,guardrails_configure,guardrails_service"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A moto server with the guard rails deployed by deploy.yml (its guardrails phases)."""
    state = tmp_path_factory.mktemp("guarded")
    moto = MotoProcess(state)
    moto.start()
    env = {"TL_AWS_ENDPOINT_URL": moto.url, "TLOPS_STATE_DIR": str(state), **STAND_IN_CREDENTIALS}
    try:
        done = playbooks.run(
            "deploy.yml", env=env, args=["--tags", PHASES], capture=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        yield {**env, "TL_AWS_REGION": REGION, "TL_PROJECT": "tinyllama"}
    finally:
        moto.stop()


@pytest.fixture
def stand_in(guarded, monkeypatch) -> dict[str, str]:
    for name, value in guarded.items():
        monkeypatch.setenv(name, value)
    return guarded


def tags(**pairs: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


@pytest.fixture
def deployment(stand_in) -> dict[str, str]:
    """What costs by the hour, tagged as deploy.yml tags it, and an untagged twin of each;
    the control bucket (the storage role's) where the killer leaves its mark."""
    ec2, cache = aws.client("ec2"), aws.client("elasticache")
    lam = aws.client("lambda")
    deployed = lam.get_function_configuration(FunctionName="tinyllama-budget-killer")
    variables = deployed["Environment"]["Variables"]
    bucket, prefix = variables["TL_CONTROL_BUCKET"], variables["TL_QUEUE_PREFIX"]
    s3 = aws.client("s3")
    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.delete_object(Bucket=bucket, Key="killed.json")  # an earlier test's kill
    node = tagged_instance()
    twin = tagged_instance(tags={"Project": "someone-else", "Role": "gpu"})
    ec2.start_instances(InstanceIds=[node, twin])
    ours = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.create_tags(Resources=[ours], Tags=tags(Project="tinyllama", Role="gpu"))
    ec2.associate_address(AllocationId=ours, InstanceId=node)
    theirs = ec2.allocate_address(Domain="vpc")["AllocationId"]
    # A deleted group stays `deleting` on the stand-in (module-wide): the next ids are fresh.
    found = cache.describe_replication_groups()["ReplicationGroups"]
    listed = [g["ReplicationGroupId"] for g in found]
    group = queue.next_id(listed, prefix)
    twin_group = queue.next_id([*listed, group], prefix)
    for group_id, pairs in ((group, {"Project": "tinyllama", "Role": "queue"}), (twin_group, {})):
        cache.create_replication_group(
            ReplicationGroupId=group_id, ReplicationGroupDescription="q", Engine="redis",
            CacheNodeType="cache.t4g.micro", NumCacheClusters=1, Tags=tags(**pairs),
        )  # fmt: skip
    return {"node": node, "twin": twin, "ours": ours, "theirs": theirs, "group": group,
            "twin_group": twin_group, "bucket": bucket}  # fmt: skip


def state(instance: str) -> str:
    found = aws.client("ec2").describe_instances(InstanceIds=[instance])["Reservations"]
    return found[0]["Instances"][0]["State"]["Name"]


def tlops(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_breach_stops_everything_that_costs_and_nothing_else(deployment, capsys):
    ec2, cache = aws.client("ec2"), aws.client("elasticache")
    code, out, err = tlops(capsys, "ops", "budget-breach", "--percent", "106", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["spend"], report["limit"], report["unit"]) == (21.2, 20.0, "USD")
    assert report["acted"] and report["changed"]
    assert state(deployment["node"]) == "stopped"
    assert state(deployment["twin"]) == "running"
    addresses = {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]}
    assert deployment["ours"] not in addresses and deployment["theirs"] in addresses
    assert report["actions"][0]["kind"] == "mark-killed"  # first, before any stop
    mark = aws.client("s3").get_object(Bucket=deployment["bucket"], Key="killed.json")
    assert report["message_id"] in json.loads(mark["Body"].read())["why"]

    def status(group_id: str) -> str:
        found = cache.describe_replication_groups(ReplicationGroupId=group_id)
        return found["ReplicationGroups"][0]["Status"]

    assert status(deployment["group"]) == "deleting"
    assert status(deployment["twin_group"]) == "available"
    assert '"message":"budget killer stop-instance"' in err  # the function's own log lines

    code, out, _ = tlops(capsys, "ops", "budget-breach", "--percent", "106", "--json")
    again = json.loads(out)
    assert code == 0 and again["acted"] and not again["changed"] and again["actions"] == []

    code, out, _ = tlops(capsys, "ops", "budget-breach", "--percent", "106")
    assert "nothing was running or deployed that costs by the hour" in out


def test_under_the_kill_line_the_killer_ignores_it(deployment, capsys):
    code, out, _ = tlops(capsys, "ops", "budget-breach", "--percent", "90")
    assert code == 0
    assert "under the kill line" in out
    assert state(deployment["node"]) == "running"


def test_a_percentage_that_is_not_one_is_refused(stand_in, capsys):
    code, _, err = tlops(capsys, "ops", "budget-breach", "--percent", "-3")
    assert code == ExitCode.SETUP and "--percent" in err


def test_on_an_account_it_wants_a_drill(stand_in, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("TL_AWS_ENDPOINT_URL")
    monkeypatch.setenv("TLOPS_STATE_DIR", str(tmp_path))  # no local stack there either
    code, _, err = tlops(capsys, "ops", "budget-breach", "--percent", "106")
    assert code == ExitCode.SETUP and "--drill" in err


def test_cost_reports_canned_figures_and_the_idle_cost(stand_in, capsys):
    code, out, _ = tlops(capsys, "cost", "--json", "--as-of", "2026-11-19")
    assert code == 0
    report = json.loads(out)
    assert report["canned"] and "not real spend" in report["source"]
    summary = report["summary"]
    assert summary["today"] == "2026-11-19" and summary["budget"] == 20.0
    assert 0 < summary["month_to_date"] < summary["projection"]
    assert len(summary["drivers"]) == 3
    assert {"rows", "total_eur_month", "recorded", "state"} <= set(report["idle_cost"])
    code, out, _ = tlops(capsys, "cost", "--as-of", "2026-11-19")
    assert "month to date  USD" in out and "canned" in out and "idle cost      EUR" in out
    assert f"stack state    {report['idle_cost']['state']}: " in out


@pytest.fixture
def bare_shell(guarded, tmp_path, monkeypatch) -> Iterator[StandingStack]:
    """The guarded stand-in as a local stack that is up and deployed (its state files, a
    gateway that answers), in a shell that names nothing and holds no AWS credentials."""
    for name in ("TL_AWS_ENDPOINT_URL", "TL_API_URL", "TL_PROJECT", "TL_AWS_REGION",
                 "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TLOPS_STATE_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    dev = tmp_path / "xdg" / "tlops" / "dev" / "outputs.json"
    dev.parent.mkdir(parents=True)
    dev.write_text(json.dumps({"project": "tinyllama", "region": REGION, "api_url": ""}))
    port = urllib.parse.urlsplit(guarded["TL_AWS_ENDPOINT_URL"]).port
    with StandingStack(tmp_path / "stack", moto_port=port) as stack:
        assert stack.adopted_by_the_old_cli()
        yield stack


def test_cost_reads_the_stand_in_only_when_named(bare_shell, capsys):
    """`--env local`: its canned month, with its own keys (the shell has none). `--env dev`,
    the same stand-in up and deployed: the account, never the stand-in."""
    code, out, err = tlops(capsys, "cost", "--env", "local", "--json", "--as-of", "2026-11-19")
    assert code == 0, err
    report = json.loads(out)
    assert report["canned"] and report["target"].startswith("the local stand-in (http://127.")
    assert report["summary"]["budget"] == 20.0
    assert ("gateway", "GET", "/ping") in bare_shell.requests  # --env local: is it up?
    bare_shell.requests.clear()
    code, out, err = tlops(capsys, "cost", "--env", "dev", "--json")
    assert code == ExitCode.SETUP and out == ""
    assert "no usable AWS credentials for deployment dev" in err and "--env local" in err
    assert "deploy.yml" not in err
    assert bare_shell.requests == []  # not even asked whether it is up


def test_cost_without_a_chart_never_imports_matplotlib(stand_in):
    script = (
        "import sys; from tlops.cli import main; code = main(['cost', '--json']); "
        "sys.exit(10 if 'matplotlib' in sys.modules else code)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_cost_draws_the_chart(stand_in, tmp_path, capsys):
    chart = tmp_path / "cost.png"
    code, out, _ = tlops(capsys, "cost", "--png", str(chart), "--as-of", "2026-11-19")
    assert code == 0 and f"chart          {chart}" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 20_000


def failing_ce(monkeypatch) -> None:
    """Cost Explorer refusing every request (botocore's Stubber behind the client factory)."""
    real = aws.client

    def client(service: str, **kwargs):
        if service != "ce":
            return real(service, **kwargs)
        ce = boto3.client("ce", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
        stub = Stubber(ce)
        for _ in range(3):
            stub.add_client_error("get_cost_and_usage", "AccessDeniedException", "not allowed")
        stub.activate()
        return ce

    monkeypatch.setattr(aws, "client", client)


def test_cost_explorer_failing_is_said_by_cost_and_by_the_mail(stand_in, monkeypatch, capsys):
    failing_ce(monkeypatch)
    code, out, _ = tlops(capsys, "cost")
    assert code == 3
    assert "Cost Explorer: no figures: Cost Explorer refused GetCostAndUsage: AccessDenied" in out
    code, out, _ = tlops(capsys, "ops", "cost-mail", "--dry-run")
    assert code == 3 and "Cost Explorer unavailable" in out and "not a zero" in out


def test_the_cost_mail_dry_run_prints_the_mail(stand_in, capsys):
    code, out, _ = tlops(capsys, "ops", "cost-mail", "--dry-run")
    assert code == 0
    assert "To: arn:aws:sns:eu-west-1:123456789012:tinyllama-cost-daily" in out
    assert "Subject: " in out and "# tinyllama daily cost, " in out and "canned" in out
    assert "- **Month to date**: USD " in out


def test_without_matplotlib_the_chart_is_refused_by_name(stand_in, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    code, _, err = tlops(capsys, "cost", "--png", str(tmp_path / "c.png"), "--as-of", "2026-11-19")
    assert code == ExitCode.SETUP and "matplotlib==3.11.2" in err
    assert not (tmp_path / "c.png").exists()
