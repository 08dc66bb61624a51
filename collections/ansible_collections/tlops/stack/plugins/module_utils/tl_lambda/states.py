# Part of tl_lambda (plugins/modules/tl_lambda.py). Apache-2.0.
"""state=present (with rollback) and state=absent of a function."""

from __future__ import annotations

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    Failure,
    tag_changes,
    tags_after,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_lambda.apply import (
    create_function,
    point_alias,
    publish,
    retire,
    update_function,
    wait_settled,
    warn_not_applied,
    write_tags,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_lambda.build import build_code
from ansible_collections.tlops.stack.plugins.module_utils.tl_lambda.read import (
    aliased_versions,
    aliases_of,
    configuration_of,
    function_view,
    get_function,
    newest_version,
    published_versions,
    state_of,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_lambda.validate import (
    desired_configuration,
)

PENDING = "(new version)"  # what check mode shows for a version it would publish


def _outcome(changed, before, after, **facts):
    return {"changed": changed, "before": before, "after": after, **facts}


def create(client, params, check_mode, build):
    """A new function: create it, wait until Active, publish version 1, alias it."""
    name, alias = params["name"], params["alias"]
    desired = desired_configuration(params)
    if check_mode:
        after = function_view(build.code_sha256, desired, PENDING, params["tags"] or {}, [PENDING])
        return _outcome(
            True, {}, after, function_name=name, function_arn=None, alias_arn=None, version=None,
            code_sha256=build.code_sha256, code_size=build.size, published=True,
            deleted_versions=[], configuration=desired,
        )  # fmt: skip
    latest = create_function(client, params, build, desired)
    arn = latest["FunctionArn"].removesuffix(":$LATEST")
    version = client.publish_version(
        FunctionName=name,
        CodeSha256=latest["CodeSha256"],
        Description=desired["description"],
        aws_retry=True,
    )["Version"]
    alias_arn = point_alias(client, name, alias, version, {})
    tags = client.list_tags(Resource=arn, aws_retry=True).get("Tags") or {}
    after = function_view(latest["CodeSha256"], configuration_of(latest), version, tags, [version])
    return _outcome(
        True, {}, after, function_name=name, function_arn=arn,
        alias_arn=alias_arn, version=version, code_sha256=latest["CodeSha256"],
        code_size=build.size, published=True, deleted_versions=[],
        configuration=configuration_of(latest),
    )  # fmt: skip


def choose_version(client, name, latest, versions, alias_before, target, changed, check_mode, warn):
    """The version the alias should point to, and whether it is (would be) newly published;
    a version published here is added to `versions`."""
    if not changed and alias_before in versions and state_of(versions[alias_before]) == target:
        return alias_before, False
    newest = newest_version(versions)
    if not changed and newest and state_of(versions[newest]) == target:
        return newest, False  # AWS would hand back this one for a publish with nothing changed
    if check_mode:
        versions[PENDING] = None
        return PENDING, True
    version, config, published = publish(client, name, latest, versions, warn)
    versions[version] = config
    return version, published


def ensure_present(client, params, check_mode, warn):
    name, alias = params["name"], params["alias"]
    build = build_code(params)
    found = get_function(client, name)
    if found is None:
        return create(client, params, check_mode, build)
    latest = found["Configuration"]
    arn = latest["FunctionArn"].removesuffix(":$LATEST")
    if latest.get("PackageType", "Zip") != "Zip":
        raise Failure(
            f"function {name} is a {latest['PackageType']} function; tl_lambda manages zip "
            "functions: delete it (state=absent) or choose another name"
        )
    if not check_mode and latest.get("LastUpdateStatus") == "InProgress":
        latest = wait_settled(client, name, params["wait_timeout"])  # someone else's update
    now = configuration_of(latest)
    desired = desired_configuration(params, now)
    versions = published_versions(client, name)
    aliases = aliases_of(client, name)
    alias_before = (aliases.get(alias) or {}).get("FunctionVersion")
    tags_now = found.get("Tags") or {}
    before = function_view(latest["CodeSha256"], now, alias_before, tags_now, versions)

    if check_mode:
        code_or_config_changed = latest["CodeSha256"] != build.code_sha256 or now != desired
        target = (build.code_sha256, desired)
    else:
        updated = update_function(client, params, build, latest, desired)
        warn_not_applied(name, updated, build, desired, warn)
        code_or_config_changed = state_of(updated) != state_of(latest)
        latest, target = updated, state_of(updated)

    version, published = choose_version(
        client, name, latest, versions, alias_before, target, code_or_config_changed,
        check_mode, warn,
    )  # fmt: skip
    if check_mode:
        alias_arn = (aliases.get(alias) or {}).get("AliasArn")
        aliases[alias] = {"FunctionVersion": version}
    else:
        alias_arn = point_alias(client, name, alias, version, aliases)
    deleted = retire(versions, params["keep_versions"], aliased_versions(aliases))
    to_set, to_remove = tag_changes(tags_now, params["tags"], params["purge_tags"])
    if not check_mode:
        for number in deleted:  # never an aliased one: AWS refuses, the stand-in would not
            client.delete_function(FunctionName=name, Qualifier=number, aws_retry=True)
        write_tags(client, arn, to_set, to_remove)
    tags = tags_after(tags_now, to_set, to_remove)
    after = function_view(*target, version, tags, [v for v in versions if v not in deleted])
    changed = code_or_config_changed or version != alias_before or bool(deleted)
    changed = changed or bool(to_set or to_remove)
    return _outcome(
        changed, before, after, function_name=name, function_arn=arn, alias_arn=alias_arn,
        version=None if version == PENDING else version, code_sha256=target[0],
        code_size=build.size, published=published, deleted_versions=deleted,
        configuration=target[1],
    )  # fmt: skip


def ensure_rolled_back(client, params, check_mode):
    """Point the alias at the published version before the one it points to now."""
    name, alias = params["name"], params["alias"]
    found = get_function(client, name)
    if found is None:
        raise Failure(f"function {name} does not exist: nothing to roll back; deploy it first")
    arn = found["Configuration"]["FunctionArn"].removesuffix(":$LATEST")
    aliases = aliases_of(client, name)
    if alias not in aliases:
        raise Failure(f"function {name} has no alias {alias}: nothing to roll back")
    current = aliases[alias]["FunctionVersion"]
    if not current.isdigit():
        raise Failure(
            f"alias {alias} of {name} points at {current}, not a published version: "
            "deploy with rollback=false first"
        )
    versions = published_versions(client, name)
    older = [v for v in versions if int(v) < int(current)]
    if not older:
        raise Failure(
            f"alias {alias} of {name} points at version {current} and no published version "
            "before it is left (the first one, or retention deleted older ones): nothing to roll "
            "back to"
        )
    target = max(older, key=int)
    alias_arn = aliases[alias]["AliasArn"]
    if not check_mode:
        alias_arn = point_alias(client, name, alias, target, aliases)
    config = versions[target]
    tags = found.get("Tags") or {}
    view = function_view(config["CodeSha256"], configuration_of(config), target, tags, versions)
    before = {**view, "alias_version": current}
    if current in versions:
        before.update(
            code_sha256=versions[current]["CodeSha256"],
            configuration=configuration_of(versions[current]),
        )
    return _outcome(
        True, before, view, function_name=name, function_arn=arn, alias_arn=alias_arn,
        version=target, code_sha256=config["CodeSha256"], code_size=config.get("CodeSize"),
        published=False, deleted_versions=[], configuration=configuration_of(config),
    )  # fmt: skip


def ensure_absent(client, params, check_mode, warn):
    """Delete the function (all versions and aliases) if it carries every tag given."""
    name = params["name"]
    found = get_function(client, name)
    if found is None:
        return _outcome(False, {}, {}, function_name=name, function_arn=None)
    arn = found["Configuration"]["FunctionArn"].removesuffix(":$LATEST")
    tags = found.get("Tags") or {}
    before = {
        "code_sha256": found["Configuration"]["CodeSha256"],
        "configuration": configuration_of(found["Configuration"]),
        "tags": tags,
    }
    missing = {k: v for k, v in (params["tags"] or {}).items() if tags.get(k) != v}
    if missing:
        warn(
            f"function {name} was not deleted: it is not tagged "
            + ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
            + " (it is not one this toolkit made, or its tags were changed)"
        )
        return _outcome(False, before, before, function_name=name, function_arn=arn)
    if not check_mode:
        client.delete_function(FunctionName=name, aws_retry=True)
    return _outcome(True, before, {}, function_name=name, function_arn=arn)
