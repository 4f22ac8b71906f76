"""Newest-first pages by (created_at, id): rows created at the same instant are neither lost nor repeated."""

from __future__ import annotations

from sqlalchemy import Column, Float, MetaData, String, Table, create_engine, insert, select

from actions_server.cursors import newest_first_page

rows_table = Table("rows", MetaData(), Column("id", String, primary_key=True), Column("created_at", Float))


def pages_of(created: dict[str, float], limit: int) -> list[list[str]]:
    engine = create_engine("sqlite://")
    rows_table.metadata.create_all(engine)
    if created:
        with engine.begin() as conn:
            conn.execute(insert(rows_table), [{"id": key, "created_at": at} for key, at in created.items()])
    pages, cursor = [], None
    while True:
        page = newest_first_page(
            engine.connect,
            select(rows_table),
            rows_table,
            lambda row: str(row.id),
            cursor=cursor,
            limit=limit,
        )
        pages.append(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return pages


def test_pages_split_rows_of_the_same_instant_without_losing_or_repeating_one() -> None:
    created = {"a": 1.5, "b": 1.5, "c": 1.5, "d": 2.25, "e": 0.125}
    assert pages_of(created, 2) == [["d", "c"], ["b", "a"], ["e"]]


def test_a_last_page_that_is_exactly_full_has_no_next_cursor() -> None:
    assert pages_of({"a": 1.0, "b": 2.0}, 2) == [["b", "a"]]
    assert pages_of({}, 2) == [[]]
