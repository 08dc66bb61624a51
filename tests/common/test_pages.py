"""The bounded page reader: follows either token style to the end, and refuses a list
that never ends instead of looping until the Lambda's timeout."""

from __future__ import annotations

import pytest

from tlops.common.pages import TooManyPages, all_items, each_item


class Pages:
    """A list call that answers `pages` in order, recording what it was asked."""

    def __init__(self, key: str, follow: str, pages: list[list[int]]):
        self.key, self.follow, self.pages, self.asked = key, follow, pages, []

    def __call__(self, **kwargs):
        self.asked.append(kwargs)
        at = int(kwargs.get(self.follow, "0"))
        answer = {self.key: [{"n": n} for n in self.pages[at]]}
        if at + 1 < len(self.pages):
            answer[self.follow] = str(at + 1)
        return answer


@pytest.mark.parametrize("follow", ["NextToken", "Marker"])
def test_every_page_is_read_once_in_order_with_the_callers_arguments(follow):
    call = Pages("Items", follow, [[1, 2], [], [3]])
    got = all_items(call, "Items", follow=follow, Filters=["f"])
    assert [i["n"] for i in got] == [1, 2, 3]
    assert call.asked == [
        {"Filters": ["f"]},
        {"Filters": ["f"], follow: "1"},
        {"Filters": ["f"], follow: "2"},
    ]


def test_a_list_that_never_ends_is_refused_after_the_bound():
    asked = []

    def forever(**kwargs):
        asked.append(kwargs)
        return {"Items": [{"n": 0}], "NextToken": "same"}

    with pytest.raises(TooManyPages, match="more than 3 pages of Items"):
        list(each_item(forever, "Items", most=3))
    assert len(asked) == 3


def test_a_page_without_the_key_counts_as_empty():
    assert all_items(lambda **_: {}, "Items") == []
