"""Reading a paginated AWS list to its end, with a bound (the one home for that loop).

The house rule: no loop over AWS pages runs unbounded. A list that has not ended
after `most` pages is a fault to report (a service answering the same token
forever, an account far past what this project deploys), not something to
follow until the Lambda's timeout. botocore's paginators (`get_paginator`) stop
only when the token does; this bounded loop is used where one is not needed.

The two token styles AWS uses: `NextToken` (EC2, SNS, most newer APIs) and
`Marker` (ElastiCache, older query APIs), both request and response field of the
same name (ElastiCache DescribeReplicationGroups, "Marker": "An optional marker
returned from a prior request... the response includes only records beyond the
marker").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

MOST_PAGES = 100  # 100 pages of the smallest page size AWS gives is thousands of items


class TooManyPages(RuntimeError):
    """A list did not end within the bound: what was read is not all there is."""


def each_item(
    call: Callable[..., dict[str, Any]],
    key: str,
    *,
    follow: str = "NextToken",
    most: int = MOST_PAGES,
    **kwargs: Any,
) -> Iterator[dict[str, Any]]:
    """Every item under `key` of `call(**kwargs)`'s pages, following the token field
    `follow` for at most `most` pages; raises TooManyPages past that."""
    mark = None
    for _ in range(most):
        page = call(**kwargs, **({follow: mark} if mark else {}))
        yield from page.get(key) or []
        mark = page.get(follow)
        if not mark:
            return
    raise TooManyPages(f"more than {most} pages of {key}: not read to the end")


def all_items(
    call: Callable[..., dict[str, Any]],
    key: str,
    *,
    follow: str = "NextToken",
    most: int = MOST_PAGES,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """each_item's items as a list."""
    return list(each_item(call, key, follow=follow, most=most, **kwargs))
