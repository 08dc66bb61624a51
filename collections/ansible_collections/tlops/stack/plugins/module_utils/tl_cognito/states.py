# Part of tl_cognito (plugins/modules/tl_cognito.py). Apache-2.0.
"""state=present and state=absent of the pool, and what a run is predicted to leave."""

from __future__ import annotations

import copy

from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    Failure,
    carries,
    tag_changes,
    tags_after,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_cognito.apply import (
    NEW_PASSWORD_POLICY,
    apply_groups,
    check_domain,
    client_request,
    create_pool_request,
    fields_of,
    plan_groups,
    pool_update_request,
    set_mfa,
    unique,
    write_tags,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_cognito.read import (
    find_pools,
    outputs,
    pool_view,
    read_state,
    refuse_secret,
)


def predicted_state(state, params, tags, groups, client_missing):
    """The state the changes lead to, in the shape read_state returns (for check mode)."""
    pool = copy.deepcopy(state["pool"])
    pool["Policies"] = {
        **(pool.get("Policies") or {}),
        "PasswordPolicy": {
            **((pool.get("Policies") or {}).get("PasswordPolicy") or NEW_PASSWORD_POLICY),
            "MinimumLength": params["password_minimum_length"],
        },
    }
    pool["DeletionProtection"] = "ACTIVE" if params["deletion_protection"] else "INACTIVE"
    pool["AdminCreateUserConfig"] = {
        **(pool.get("AdminCreateUserConfig") or {}),
        "AllowAdminCreateUserOnly": True,
    }
    pool["UserPoolTags"] = tags
    if params["domain_prefix"] is not None:
        pool["Domain"] = params["domain_prefix"]
    app = state["client"]
    spec = params["client"]
    if spec is not None:
        request = client_request(spec, app, members=list(app or {}))
        app = {**(app or {}), **request, "ClientId": None if client_missing else app["ClientId"]}
    return {
        "pool": pool,
        "mfa": params["mfa"],
        "client": app,
        "groups": groups,
        "domain_status": state.get("domain_status"),
    }


def warn_unapplied(predicted, actual, warn):
    for key, wanted in predicted.items():
        if actual.get(key) != wanted:
            warn(
                f"after the changes the endpoint reports {key}={actual.get(key)!r}, not "
                f"{wanted!r}: it did not apply that setting"
            )


def ensure_present(client, params, check_mode, warn):
    name = params["pool_name"]
    pools = find_pools(client, name)
    tags = params["tags"] or {}
    if "Project" in tags and pools:
        # Names are not unique: a pool of that name without our Project tag is someone else's
        # and is never adopted.
        described = {
            p["Id"]: client.describe_user_pool(UserPoolId=p["Id"], aws_retry=True)["UserPool"]
            for p in pools
        }
        foreign = [
            pool_id
            for pool_id, pool in described.items()
            if (pool.get("UserPoolTags") or {}).get("Project") != tags["Project"]
        ]
        if foreign:
            warn(
                f"user pool(s) {', '.join(foreign)} are named {name} but do not carry "
                f"Project={tags['Project']}: left alone, not managed by this module"
            )
        pools = [p for p in pools if p["Id"] not in foreign]
    if len(pools) > 1:
        ids = ", ".join(p["Id"] for p in pools)
        raise Failure(
            f"{len(pools)} user pools are named {name}: {ids}; delete or rename the extra ones "
            "so the module knows which one to manage"
        )
    spec = params["client"]
    if not pools:
        return create_everything(client, params, check_mode, warn)
    pool_id = pools[0]["Id"]
    state = read_state(client, pool_id, spec and spec["name"])
    refuse_secret(state["client"])
    pool = state["pool"]
    before = pool_view(state)

    current_tags = dict(pool.get("UserPoolTags") or {})
    to_set, to_remove = tag_changes(current_tags, params["tags"], params["purge_tags"])
    final_tags = tags_after(current_tags, to_set, to_remove)
    create, update, delete, groups = plan_groups(
        state["groups"], params["groups"], params["purge_groups"]
    )
    make_domain = check_domain(client, pool_id, pool.get("Domain"), params["domain_prefix"])
    client_missing = spec is not None and state["client"] is None
    predicted = predicted_state(state, params, final_tags, groups, client_missing)
    after = pool_view(predicted)

    config_differs = any(
        before[key] != after[key]
        for key in ("password_minimum_length", "deletion_protection", "self_sign_up")
    )
    changed = before != after
    if check_mode or not changed:
        return {"changed": changed, **outputs(predicted, params), "before": before, "after": after}

    tags_through_update = False  # where the endpoint lacks TagResource, UpdateUserPool writes them
    if to_set or to_remove:
        tagged = gaps.optional(
            write_tags, "cognito-idp-no-tag-calls", client, pool["Arn"], to_set, to_remove
        )
        tags_through_update = tagged is gaps.LACKING
        if tags_through_update:
            gaps.warn(warn, "cognito-idp-no-tag-calls")
    if before["mfa"] != after["mfa"]:
        set_mfa(client, pool_id, params["mfa"])
    if config_differs or tags_through_update:
        client.update_user_pool(
            aws_retry=True,
            **pool_update_request(pool, params, final_tags, fields_of(client, "UpdateUserPool")),
        )
    if client_missing:
        client.create_user_pool_client(UserPoolId=pool_id, aws_retry=True, **client_request(spec))
    elif spec is not None and before["client"] != after["client"]:
        client.update_user_pool_client(
            aws_retry=True,
            **client_request(spec, state["client"], fields_of(client, "UpdateUserPoolClient")),
        )
    apply_groups(client, pool_id, create, update, delete)
    if make_domain:
        client.create_user_pool_domain(
            UserPoolId=pool_id, Domain=params["domain_prefix"], aws_retry=True
        )

    final = read_state(client, pool_id, spec and spec["name"])
    actual = pool_view(final)
    warn_unapplied(after, actual, warn)
    return {"changed": True, **outputs(final, params), "before": before, "after": actual}


def create_everything(client, params, check_mode, warn):
    spec = params["client"]
    check_domain(client, None, None, params["domain_prefix"])
    _, _, _, groups = plan_groups({}, params["groups"], False)
    skeleton = {
        "pool": {"Name": params["pool_name"], "Domain": params["domain_prefix"]},
        "mfa": params["mfa"],
        "client": None,
        "groups": groups,
    }
    predicted = predicted_state(skeleton, params, dict(params["tags"] or {}), groups, True)
    after = pool_view(predicted)
    if check_mode:
        return {"changed": True, **outputs(predicted, params), "before": {}, "after": after}

    pool_id = client.create_user_pool(aws_retry=True, **create_pool_request(params))["UserPool"][
        "Id"
    ]
    if params["mfa"] != "OFF":
        set_mfa(client, pool_id, params["mfa"])
    if spec is not None:
        client.create_user_pool_client(UserPoolId=pool_id, aws_retry=True, **client_request(spec))
    apply_groups(client, pool_id, params["groups"], [], [])
    if params["domain_prefix"] is not None:
        client.create_user_pool_domain(
            UserPoolId=pool_id, Domain=params["domain_prefix"], aws_retry=True
        )
    final = read_state(client, pool_id, spec and spec["name"])
    actual = pool_view(final)
    warn_unapplied(after, actual, warn)
    return {"changed": True, **outputs(final, params), "before": {}, "after": actual}


def ensure_absent(client, params, check_mode, warn):
    name, tags = params["pool_name"], params["tags"]
    pools = [
        client.describe_user_pool(UserPoolId=p["Id"], aws_retry=True)["UserPool"]
        for p in find_pools(client, name)
    ]
    ours = [pool for pool in pools if carries(pool.get("UserPoolTags"), tags)]
    for pool in pools:
        if pool not in ours:
            warn(
                f"user pool {pool['Id']} named {name} was not deleted: it does not carry the "
                f"tags {tags}"
            )
    if len(ours) > 1:
        ids = ", ".join(pool["Id"] for pool in ours)
        raise Failure(
            f"{len(ours)} user pools named {name} carry the tags {tags}: {ids}; the module will "
            "not guess which one to delete: delete the extra ones by id"
        )
    if not ours:
        return {"changed": False, **outputs(None, params), "before": {}, "after": {}}
    pool = ours[0]
    if pool.get("DeletionProtection") == "ACTIVE":
        raise Failure(
            f"user pool {pool['Id']} ({name}) has deletion protection on; turn it off first "
            "(state: present with deletion_protection: false), then delete it"
        )
    spec = params["client"]
    before = pool_view(read_state(client, pool["Id"], spec and spec["name"], strict=False))
    if not check_mode:
        for domain in unique(d for d in (pool.get("Domain"), pool.get("CustomDomain")) if d):
            client.delete_user_pool_domain(UserPoolId=pool["Id"], Domain=domain, aws_retry=True)
        client.delete_user_pool(UserPoolId=pool["Id"], aws_retry=True)
    return {"changed": True, **outputs(None, params), "before": before, "after": {}}
