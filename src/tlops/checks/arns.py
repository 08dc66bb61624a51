"""ARN patterns, compared: whether a policy's Resource entry and an ARN format of AWS's
Service Authorization Reference can name the same ARN (tlops.checks.policy asks it of
every resource a statement lists).

A Resource entry's * and ? are wildcards within an ARN's colon-separated segments, a * covers
slashes within its segment, and a * that ends a segment may run past its colon (IAM User
Guide, "IAM JSON policy elements: Resource",
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html).
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import Any


class _Wild(enum.Enum):
    ANY = "a policy's *: any run of characters, the empty one included"
    ONE = "a policy's ?: exactly one character"


@dataclass(frozen=True)
class _Run:
    """A reference variable such as ${InstanceId}: one or more characters, none in `excluded`."""

    excluded: frozenset[str]


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_ARN_HEADER_COLONS = 5  # arn:partition:service:region:account: then the resource


def _policy_tokens(resource: str) -> tuple[str | _Wild, ...]:
    """A Resource entry as characters and wildcards. A policy variable (${aws:username}) may
    stand for any value; ${*} ${?} ${$} are the literal characters."""
    tokens: list[str | _Wild] = []
    at = 0
    while at < len(resource):
        variable = _VARIABLE.match(resource, at)
        if variable:
            inner = variable.group(1)
            tokens.append(inner if inner in ("*", "?", "$") else _Wild.ANY)
            at = variable.end()
            continue
        char = resource[at]
        tokens.append(_Wild.ANY if char == "*" else _Wild.ONE if char == "?" else char)
        at += 1
    return tuple(tokens)


def _format_tokens(arn_format: str) -> tuple[str | _Run, ...]:
    """A reference ARN format as characters and variables, read segment-wise: a variable in
    the partition, region or account segment holds no colon; one in the resource part holds
    no copy of the separator (/ or :) that follows it; the last one holds anything (an S3 key,
    a log group's path, a parameter's name with its slashes)."""
    tokens: list[str | _Run] = []
    colons = 0
    at = 0
    while at < len(arn_format):
        variable = _VARIABLE.match(arn_format, at)
        if variable:
            after = arn_format[variable.end() : variable.end() + 1]
            if colons < _ARN_HEADER_COLONS:
                excluded = frozenset(":")
            else:
                excluded = frozenset(after) if after in ("/", ":") else frozenset()
            tokens.append(_Run(excluded))
            at = variable.end()
            continue
        colons += arn_format[at] == ":"
        tokens.append(arn_format[at])
        at += 1
    return tuple(tokens)


def _same_character(policy: str | _Wild, reference: str | _Run) -> bool:
    """Whether one character can be both what `policy` and what `reference` stand for."""
    if isinstance(policy, _Wild):
        return True  # any character, and a variable always admits one
    if isinstance(reference, _Run):
        return policy not in reference.excluded
    return policy == reference


def _segments(tokens: tuple[Any, ...]) -> tuple[tuple[Any, ...], ...]:
    """Tokens split at the first five literal colons: arn, partition, service, region,
    account, and the resource part (which may hold colons of its own)."""
    segments: list[tuple[Any, ...]] = []
    current: list[Any] = []
    for part in tokens:
        if part == ":" and len(segments) < _ARN_HEADER_COLONS:
            segments.append(tuple(current))
            current = []
        else:
            current.append(part)
    return (*segments, tuple(current))


@functools.cache
def arn_overlaps(resource: str, arn_format: str) -> bool:
    """Whether some ARN both matches the Resource entry `resource` (the Resource element's
    wildcards, case-sensitively) and has the reference's `arn_format`, segment by segment.
    An entry with fewer segments ("arn:aws:s3:*") is matched whole: its last * spans them."""
    policy, reference = _policy_tokens(resource), _format_tokens(arn_format)
    policy_segments, reference_segments = _segments(policy), _segments(reference)
    if len(policy_segments) != len(reference_segments):
        return _tokens_overlap(policy, reference)
    pairs = zip(policy_segments, reference_segments, strict=True)
    return all(_tokens_overlap(mine, theirs) for mine, theirs in pairs)


@functools.cache
def _tokens_overlap(policy: tuple[str | _Wild, ...], reference: tuple[str | _Run, ...]) -> bool:
    """Whether one string matches both token sequences."""

    @functools.cache
    def from_here(i: int, j: int, in_variable: bool) -> bool:
        if i == len(policy) and j == len(reference):
            return True
        here = policy[i] if i < len(policy) else None
        there = reference[j] if j < len(reference) else None
        if here is _Wild.ANY and from_here(i + 1, j, in_variable):
            return True  # the * ends here
        if isinstance(there, _Run) and in_variable and from_here(i, j + 1, False):
            return True  # the variable ends here
        if here is None or there is None or not _same_character(here, there):
            return False
        if here is _Wild.ANY and isinstance(there, _Run) and in_variable:
            return False  # both go on: the same state again, nothing new to reach
        next_i = i if here is _Wild.ANY else i + 1
        next_j, next_in = (j, True) if isinstance(there, _Run) else (j + 1, False)
        return from_here(next_i, next_j, next_in)

    return from_here(0, 0, False)
