"""Ids the API hands out: prefixed, unique, and in creation order when sorted."""

from __future__ import annotations

import re
import time

from app.ids import new_id


def test_an_id_carries_its_prefix() -> None:
    assert re.fullmatch(r"wat_[0-9a-f]{28}", new_id("wat"))
    assert new_id("cli").startswith("cli_")


def test_ids_are_unique_even_within_one_millisecond() -> None:
    ids = [new_id("wat") for _ in range(10_000)]

    assert len(set(ids)) == len(ids)


def test_sorting_ids_sorts_them_by_creation() -> None:
    created = []
    for _ in range(5):
        created.append(new_id("wat"))
        time.sleep(0.002)  # the order is by millisecond; within one, ids are merely unique

    assert sorted(created) == created
    assert sorted(reversed(created)) == created
