"""Every custom module refuses state=absent without the Project tag: nothing is ever deleted
by its name alone (names are not identities, docs/decisions.md)."""

from __future__ import annotations

import pytest

from .harness import ModuleFailed, run_module

ABSENT = {
    "tl_budget": {"name": "tinyllama-monthly"},
    "tl_cognito": {"pool_name": "tinyllama-users"},
    "tl_dashboard": {"name": "TinyLlama-Overview"},
    "tl_elasticache": {"replication_group_id": "tinyllama-queue"},
    "tl_http_api": {"name": "tinyllama-api"},
    "tl_lambda": {"name": "tinyllama-router"},
    "tl_metric_alarm": {"name": "tinyllama-api-p95-latency"},
    "tl_query_definition": {"name": "tinyllama/api_5xx_by_route"},
}


@pytest.mark.parametrize("module", sorted(ABSENT))
@pytest.mark.parametrize("tags", [None, {}, {"Role": "router"}])
def test_absent_without_the_project_tag_is_refused(aws_args, module, tags):
    args = {**aws_args, **ABSENT[module], "state": "absent"}
    if tags is not None:
        args["tags"] = tags
    with pytest.raises(ModuleFailed) as failed:
        run_module(module, args)
    assert "state=absent needs tags with at least Project" in failed.value.result["msg"]
