"""URL-group membership (`homing.url_groups`): adding replaces a member with the same url or
name in place, removing matches by url or by name."""

from __future__ import annotations

from homing.publish import Endpoint
from homing.url_groups import merge, remove

A = Endpoint("https://a.example/", "a")
B = Endpoint("https://b.example/", "b")
C = Endpoint("https://c.example/")


def test_new_endpoints_are_appended_in_order() -> None:
    assert merge([], [A, B]) == [A, B]
    assert merge([A], [C]) == [A, C]


def test_an_endpoint_with_a_members_url_replaces_it_in_place() -> None:
    renamed = Endpoint(A.url, "first")
    assert merge([A, B], [renamed]) == [renamed, B]


def test_an_endpoint_with_a_members_name_replaces_it_in_place() -> None:
    moved = Endpoint("https://elsewhere.example/", "a")
    assert merge([A, B], [moved]) == [moved, B]


def test_an_unnamed_endpoint_matches_by_url_only() -> None:
    assert merge([C], [Endpoint("https://d.example/")]) == [C, Endpoint("https://d.example/")]


def test_adding_the_same_endpoint_twice_keeps_one() -> None:
    assert merge([A], [A, A]) == [A]


def test_remove_by_url_or_by_name() -> None:
    assert remove([A, B, C], [Endpoint(C.url)]) == [A, B]
    assert remove([A, B, C], [Endpoint("", "a")]) == [B, C]
    assert remove([A, B], [Endpoint("https://unknown.example/")]) == [A, B]


def test_removing_every_member_leaves_an_empty_group() -> None:
    assert remove([A, B], [A, B]) == []
