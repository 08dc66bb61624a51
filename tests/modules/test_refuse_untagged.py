"""Every custom module refuses state=absent without the Project tag: nothing is ever deleted
by its name alone (names are not identities, docs/decisions.md). The exceptions, whose resource
cannot carry a tag and is no name of ours to go by, are listed in EXEMPT with why."""

from __future__ import annotations

import pytest
import yaml

from .harness import ModuleFailed, load, run_module

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

# Modules whose state=absent goes by no tag, and why. Each takes no `tags` option, so that no
# task can look as if one were checked.
EXEMPT = {
    # A notification configuration has no tags and no ARN, only an Id inside the bucket's
    # configuration; the bucket is the project's, and absent removes that one entry from it.
    "tl_bucket_notification": {"bucket": "tinyllama-control-123456789012", "id": "control"},
}


@pytest.mark.parametrize("module", sorted(EXEMPT))
def test_an_exempt_module_takes_no_tags(aws_args, module):
    assert module not in ABSENT
    assert "tags" not in yaml.safe_load(load(module).DOCUMENTATION)["options"]
    # Its absent runs without them; on an empty stand-in there is nothing to remove.
    gone = run_module(module, {**aws_args, **EXEMPT[module], "state": "absent"})
    assert gone["changed"] is False


@pytest.mark.parametrize("module", sorted(ABSENT))
@pytest.mark.parametrize("tags", [None, {}, {"Role": "router"}])
def test_absent_without_the_project_tag_is_refused(aws_args, module, tags):
    args = {**aws_args, **ABSENT[module], "state": "absent"}
    if tags is not None:
        args["tags"] = tags
    with pytest.raises(ModuleFailed) as failed:
        run_module(module, args)
    assert "state=absent needs tags with at least Project" in failed.value.result["msg"]
