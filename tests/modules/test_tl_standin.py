"""tlops.stack's tl_standin: the one table of what the stand-in lacks, and its use."""

from __future__ import annotations

import ast
import string

import pytest
from botocore.exceptions import ClientError

from .harness import MODULES_DIR, UTILS_DIR, code

gaps = code("tl_standin")

SOURCES = sorted([*MODULES_DIR.glob("tl_*.py"), *UTILS_DIR.rglob("*.py")])
PAGE = "<!doctype html>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>"


def uses():
    """(file, function, gap id, keyword names) of every gaps.optional/warn/text call."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "gaps"
            ):
                continue
            position = 0 if node.func.attr == "text" else 1
            gap = node.args[position]
            assert isinstance(gap, ast.Constant), f"{path.name}: a gap id is a literal"
            keywords = {k.arg for k in node.keywords if k.arg}
            found.append((path.name, node.func.attr, gap.value, keywords))
    return found


def fields(says):
    return {name for _, name, _, _ in string.Formatter().parse(says) if name}


def error(code: str, message: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "AnyCall",
    )


def test_every_gap_a_module_names_is_in_the_table_and_every_gap_is_used():
    used = {gap for _, _, gap, _ in uses()}
    assert used, "no module refers to a gap"
    assert used - set(gaps.GAPS) == set(), "gaps named but not in the table"
    assert set(gaps.GAPS) - used == set(), "gaps in the table that no module handles"


def test_what_a_module_says_fills_exactly_the_gaps_fields():
    for name, how, gap, keywords in uses():
        if how in ("warn", "text"):
            assert keywords == fields(gaps.GAPS[gap].says), f"{name}: {how}({gap!r})"


def test_only_a_gap_the_endpoint_refuses_is_asked_for_with_optional():
    for name, how, gap, _ in uses():
        if how == "optional":
            assert gaps.GAPS[gap].refused is not None, f"{name}: {gap} shows in a read-back"


@pytest.mark.parametrize("gap", sorted(gaps.GAPS))
def test_each_gap_names_its_calls_as_aws_does(gap):
    entry = gaps.GAPS[gap]
    assert entry.calls and all(":" in call for call in entry.calls)
    service, operation = entry.calls[0].split(":")
    assert gap.startswith(service) and operation[0].isupper()


def test_optional_answers_lacking_for_the_refusal_and_raises_anything_else():
    def refused():
        raise error("500", PAGE, 500)

    def throttled():
        raise error("ThrottlingException", "slow down", 400)

    assert gaps.optional(refused, "budgets-no-update-budget") is gaps.LACKING
    assert gaps.optional(lambda **kw: kw, "budgets-no-update-budget", a=1) == {"a": 1}
    with pytest.raises(ClientError):
        gaps.optional(throttled, "budgets-no-update-budget")


def test_a_missing_member_cluster_is_its_own_refusal():
    def missing():
        raise error("CacheClusterNotFound", "CacheCluster q-001 not found.", 404)

    assert gaps.optional(missing, "elasticache-no-member-clusters") is gaps.LACKING
    with pytest.raises(ClientError):
        gaps.optional(missing, "elasticache-no-parameter-groups")
