"""The stand-in's side of the idle_watchdog scenario, run in the container by moto's venv.

standin.py create            this node's instance and a neighbour (both tagged as the
                             project's GPU node), ids in /etc/tlops-molecule/
standin.py ids node|neighbour
standin.py state node|neighbour
standin.py start node        (again running, for the next check)
standin.py autostops         the AutoStops data points the watchdog sent
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3

ENDPOINT = "http://127.0.0.1:5000"
REGION = "eu-west-1"  # the roles' default aws_region
STATE = Path("/etc/tlops-molecule")
TAGS = [{"Key": "Project", "Value": "tinyllama"}, {"Key": "Role", "Value": "gpu"}]


def client(service: str):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id="standin-key-id",
        aws_secret_access_key="standin-secret",
    )


def ids() -> dict[str, str]:
    return json.loads((STATE / "instances.json").read_text())


def create() -> None:
    ec2 = client("ec2")
    made = {}
    for name in ("node", "neighbour"):
        reply = ec2.run_instances(
            ImageId="ami-12c6146b",
            InstanceType="t3.small",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [*TAGS, {"Key": "Name", "Value": name}]}
            ],
        )
        made[name] = reply["Instances"][0]["InstanceId"]
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "instances.json").write_text(json.dumps(made) + "\n")
    (STATE / "instance-id").write_text(made["node"] + "\n")
    print(json.dumps(made))


def instance(name: str) -> None:
    print(ids()[name])


def state(name: str) -> None:
    reply = client("ec2").describe_instances(InstanceIds=[ids()[name]])
    print(reply["Reservations"][0]["Instances"][0]["State"]["Name"])


def start(name: str) -> None:
    client("ec2").start_instances(InstanceIds=[ids()[name]])
    state(name)


def autostops() -> None:
    reply = client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "autostops",
                "MetricStat": {
                    "Metric": {"Namespace": "TLFIF", "MetricName": "AutoStops"},
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime="2020-01-01T00:00:00Z",
        EndTime="2100-01-01T00:00:00Z",
    )
    print(int(sum(reply["MetricDataResults"][0]["Values"])))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"create": create, "ids": instance, "state": state, "start": start, "autostops": autostops}[
        command
    ](*args)
