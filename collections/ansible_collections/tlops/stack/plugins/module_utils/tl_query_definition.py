# Part of tl_query_definition (plugins/modules/tl_query_definition.py). Apache-2.0.
"""A saved CloudWatch Logs Insights query: find it by name, compare, write, delete ours.

Query definitions carry no tags; the project's are named `<Project>/<query>`, and that
name is the only mark an absent state can go by. The local stand-in lacks every query
definition call: the module then warns (tl_standin) and changes nothing.
"""

from __future__ import annotations

from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure, pages

MAX_QUERY_CHARS = 10000  # PutQueryDefinition's limit on queryString


def check(params):
    name, project = params["name"], (params["tags"] or {}).get("Project")
    if project and not name.startswith(f"{project}/"):
        raise Failure(
            f"name {name!r} must start with '{project}/': a query definition carries no tags, "
            "its name is how teardown knows it is the project's"
        )
    if params["state"] == "absent":
        return
    query = params["query_string"] or ""
    if not query.strip():
        raise Failure("query_string is required when state=present")
    if len(query) > MAX_QUERY_CHARS:
        raise Failure(f"query_string is {len(query)} characters, over {MAX_QUERY_CHARS}")
    if not params["log_group_names"]:
        raise Failure("log_group_names needs at least one log group when state=present")


def find(client, name, warn):
    """The definition named exactly `name`, None if there is none, LACKING on the stand-in."""
    listed = gaps.optional(
        pages, "logs-no-query-definitions", client.describe_query_definitions,
        "queryDefinitions", marker="nextToken", queryDefinitionNamePrefix=name, maxResults=1000,
    )  # fmt: skip
    if listed is gaps.LACKING:
        gaps.warn(warn, "logs-no-query-definitions", call="DescribeQueryDefinitions", name=name)
        return gaps.LACKING
    matches = [d for d in listed if d.get("name") == name]
    return matches[0] if matches else None


def view(definition):
    if definition is None:
        return None
    return {
        "name": definition["name"],
        "query_string": definition.get("queryString", ""),
        "log_group_names": sorted(definition.get("logGroupNames") or []),
    }


def ensure_present(client, params, check_mode, warn):
    name = params["name"]
    wanted = {
        "name": name,
        "query_string": params["query_string"],
        "log_group_names": sorted(params["log_group_names"]),
    }
    current = find(client, name, warn)
    if current is gaps.LACKING:
        return dict(changed=False, before=None, after=None, name=name, query_definition_id=None)
    before = view(current)
    changed = before != wanted
    definition_id = (current or {}).get("queryDefinitionId")
    if changed and not check_mode:
        extra = {"queryDefinitionId": definition_id} if definition_id else {}
        answer = client.put_query_definition(
            name=name, queryString=wanted["query_string"],
            logGroupNames=wanted["log_group_names"], aws_retry=True, **extra,
        )  # fmt: skip
        definition_id = answer.get("queryDefinitionId", definition_id)
    return dict(changed=changed, before=before, after=wanted, name=name,
                query_definition_id=definition_id)  # fmt: skip


def ensure_absent(client, params, check_mode, warn):
    name = params["name"]
    current = find(client, name, warn)
    if current is gaps.LACKING or current is None:
        return dict(changed=False, before=None, after=None, name=name, query_definition_id=None)
    if not check_mode:
        client.delete_query_definition(
            queryDefinitionId=current["queryDefinitionId"], aws_retry=True
        )
    return dict(changed=True, before=view(current), after=None, name=name,
                query_definition_id=current["queryDefinitionId"])  # fmt: skip
