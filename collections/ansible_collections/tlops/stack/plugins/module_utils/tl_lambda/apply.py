# Part of tl_lambda (plugins/modules/tl_lambda.py). Apache-2.0.
"""The calls that change a function: create, update, publish, alias, retire, tag."""

from __future__ import annotations

import time

from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    Failure,
    apply_tags,
    wait_until,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_lambda.propagation import (
    backoff,
    while_propagating,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_lambda.read import (
    configuration_of,
    newest_version,
    state_of,
    version_order,
)

WAIT_DELAY = 2.0  # seconds between polls of an update in progress
PAUSE = time.sleep  # between tries while Lambda refuses a role IAM has not propagated yet


def wait_settled(client, name, timeout):
    """Wait until the function is Active and no update is in progress; its configuration."""

    def settled(config):
        for field, reason in (
            ("State", "StateReason"),
            ("LastUpdateStatus", "LastUpdateStatusReason"),
        ):
            if config.get(field) == "Failed":
                raise Failure(
                    f"function {name}: {field} is Failed "
                    f"({config.get(reason, 'no reason given')}); "
                    "fix the cause (role, code, configuration) and run again"
                )
        return config.get("State", "Active") == "Active" and config.get(
            "LastUpdateStatus", "Successful"
        ) not in ("InProgress",)

    return wait_until(
        lambda: client.get_function_configuration(FunctionName=name, aws_retry=True),
        settled,
        what=f"function {name} to be Active with no update in progress",
        timeout=timeout,
        delay=WAIT_DELAY,
    )


def vpc_config(desired):
    """VpcConfig as Lambda takes it; empty lists take the function out of a VPC."""
    return {
        "SubnetIds": desired["vpc_subnet_ids"],
        "SecurityGroupIds": desired["vpc_security_group_ids"],
    }


def create_function(client, params, build, desired):
    """Create the function, retrying (bounded) while Lambda refuses a role or policy IAM has
    not propagated yet, then wait for it to be Active; its configuration."""
    name = params["name"]
    while_propagating(
        lambda: client.create_function(
            FunctionName=name,
            Runtime=desired["runtime"],
            Role=desired["role_arn"],
            Handler=desired["handler"],
            Code={"ZipFile": build.data},
            Description=desired["description"],
            Timeout=desired["timeout"],
            MemorySize=desired["memory_size"],
            Environment={"Variables": desired["environment"]},
            TracingConfig={"Mode": desired["tracing_mode"]},
            Architectures=[desired["architecture"]],
            VpcConfig=vpc_config(desired),
            Tags=params["tags"] or {},
            Publish=False,
            aws_retry=True,
        ),
        role_arn=desired["role_arn"],
        what=f"creating function {name}",
        delays=backoff(params["propagation_timeout"]),
        sleep=PAUSE,
    )
    return wait_settled(client, name, params["wait_timeout"])


def update_function(client, params, build, latest, desired):
    """Update code and/or configuration where they differ; the configuration afterwards."""
    name, timeout = params["name"], params["wait_timeout"]
    now = configuration_of(latest)
    if latest["CodeSha256"] != build.code_sha256 or now["architecture"] != desired["architecture"]:
        client.update_function_code(
            FunctionName=name,
            ZipFile=build.data,
            Architectures=[desired["architecture"]],
            Publish=False,
            aws_retry=True,
        )
        latest = wait_settled(client, name, timeout)  # a second update would be refused
    if any(now[key] != desired[key] for key in desired if key != "architecture"):
        while_propagating(
            lambda: client.update_function_configuration(
                FunctionName=name,
                Role=desired["role_arn"],
                Handler=desired["handler"],
                Runtime=desired["runtime"],
                MemorySize=desired["memory_size"],
                Timeout=desired["timeout"],
                Environment={"Variables": desired["environment"]},
                TracingConfig={"Mode": desired["tracing_mode"]},
                Description=desired["description"],
                VpcConfig=vpc_config(desired),
                aws_retry=True,
            ),
            role_arn=desired["role_arn"],
            what=f"updating the configuration of function {name}",
            delays=backoff(params["propagation_timeout"]),
            sleep=PAUSE,
        )
        latest = wait_settled(client, name, timeout)
    return latest


def warn_not_applied(name, latest, build, desired, warn):
    """Warn about fields the endpoint accepted an update for but did not apply; the caller
    compares what it read back, so they are not reported as changed."""
    after = configuration_of(latest)
    missed = {key: after[key] for key in desired if after[key] != desired[key]}
    if latest["CodeSha256"] != build.code_sha256:
        missed["code_sha256"] = latest["CodeSha256"]
    if missed:
        fields = ", ".join(f"{key} (still {value!r})" for key, value in missed.items())
        gaps.warn(warn, "lambda-ignored-update-fields", function=name, fields=fields)


def publish(client, name, latest, versions, warn):
    """Publish $LATEST; (version, its configuration, whether a new one was made)."""
    config = client.publish_version(
        FunctionName=name,
        CodeSha256=latest["CodeSha256"],
        Description=latest.get("Description") or "",
        aws_retry=True,
    )
    number = config["Version"]
    if number not in versions:
        return number, config, True
    if number == newest_version(versions) and state_of(versions[number]) == state_of(latest):
        return number, versions[number], False  # AWS: nothing changed since the last publish
    # A number already taken, for other code: the stale copy would shadow the new version.
    client.delete_function(FunctionName=name, Qualifier=number, aws_retry=True)
    gaps.warn(warn, "lambda-reused-version-number", function=name, number=number)
    return number, config, True


def point_alias(client, name, alias, version, aliases):
    """Create or move the alias; its ARN."""
    current = aliases.get(alias)
    if current is not None and current["FunctionVersion"] == version:
        return current["AliasArn"]
    call = client.create_alias if current is None else client.update_alias
    aliases[alias] = call(FunctionName=name, Name=alias, FunctionVersion=version, aws_retry=True)
    return aliases[alias]["AliasArn"]


def retire(versions, keep, protected):
    """Published versions beyond the newest `keep` that no alias points to, oldest first."""
    ordered = sorted(versions, key=version_order)
    return [v for v in ordered[: max(len(ordered) - keep, 0)] if v not in protected]


def write_tags(client, arn, to_set, to_remove):
    apply_tags(
        lambda tags: client.tag_resource(Resource=arn, Tags=tags, aws_retry=True),
        lambda keys: client.untag_resource(Resource=arn, TagKeys=keys, aws_retry=True),
        to_set,
        to_remove,
    )
