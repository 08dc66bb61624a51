# Part of tl_lambda (plugins/modules/tl_lambda.py). Apache-2.0.
"""What Lambda holds of a function: its configuration, versions and aliases, and the view."""

from __future__ import annotations

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    ClientError,
    is_not_found,
    pages,
)

# The managed fields: snake_case name → how to read it from a FunctionConfiguration.
READ = {
    "role_arn": lambda c: c.get("Role"),
    "handler": lambda c: c.get("Handler"),
    "runtime": lambda c: c.get("Runtime"),
    "memory_size": lambda c: c.get("MemorySize"),
    "timeout": lambda c: c.get("Timeout"),
    "environment": lambda c: dict((c.get("Environment") or {}).get("Variables") or {}),
    "tracing_mode": lambda c: (c.get("TracingConfig") or {}).get("Mode", "PassThrough"),
    "architecture": lambda c: (c.get("Architectures") or ["x86_64"])[0],
    "description": lambda c: c.get("Description") or "",
    "vpc_subnet_ids": lambda c: sorted((c.get("VpcConfig") or {}).get("SubnetIds") or []),
    "vpc_security_group_ids": lambda c: sorted(
        (c.get("VpcConfig") or {}).get("SecurityGroupIds") or []
    ),
}


def configuration_of(config):
    """The managed fields of a FunctionConfiguration, snake_case."""
    return {key: read(config) for key, read in READ.items()}


def state_of(config):
    """What a version is made of: its code and its managed configuration."""
    return config.get("CodeSha256"), configuration_of(config)


def get_function(client, name):
    try:
        return client.get_function(FunctionName=name, aws_retry=True)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def published_versions(client, name):
    """version number (str) → its FunctionConfiguration, $LATEST left out."""
    listed = pages(
        client.list_versions_by_function,
        "Versions",
        marker="Marker",
        next_marker="NextMarker",
        FunctionName=name,
    )
    return {config["Version"]: config for config in listed if config["Version"] != "$LATEST"}


def aliases_of(client, name):
    """alias name → the alias (FunctionVersion, AliasArn, RoutingConfig)."""
    listed = pages(
        client.list_aliases, "Aliases", marker="Marker", next_marker="NextMarker", FunctionName=name
    )
    return {alias["Name"]: alias for alias in listed}


def aliased_versions(aliases):
    """Every version an alias routes to (its version and any weighted extra ones)."""
    found = set()
    for alias in aliases.values():
        found.add(alias.get("FunctionVersion"))
        found.update((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})
    return found


def version_order(version):
    """Sort key of a version number: numeric, a pending one last."""
    return int(version) if version.isdigit() else float("inf")


def newest_version(versions):
    """The newest of the version numbers, None if there are none."""
    return max(versions, key=version_order) if versions else None


def function_view(sha, configuration, alias_version, tags, versions):
    """What the diff shows of a function."""
    return {
        "code_sha256": sha,
        "configuration": configuration,
        "alias_version": alias_version,
        "tags": tags,
        "versions": sorted(versions, key=version_order),
    }
