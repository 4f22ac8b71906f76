"""Newest-first pages by (created_at, id): rows created at the same instant are neither lost nor repeated."""

from __future__ import annotations

from sqlalchemy import Column, Float, MetaData, String, Table, create_engine, insert, select

from actions_server.cursors import newest_first, next_cursor

rows_table = Table("rows", MetaData(), Column("id", String, primary_key=True), Column("created_at", Float))


def test_pages_split_rows_of_the_same_instant_without_losing_or_repeating_one() -> None:
    engine = create_engine("sqlite://")
    rows_table.metadata.create_all(engine)
    created = {"a": 1.5, "b": 1.5, "c": 1.5, "d": 2.25, "e": 0.125}
    with engine.begin() as conn:
        conn.execute(insert(rows_table), [{"id": key, "created_at": at} for key, at in created.items()])

    pages, cursor = [], None
    with engine.connect() as conn:
        while True:
            query = newest_first(select(rows_table), rows_table.c.created_at, rows_table.c.id, cursor, 2)
            found = conn.execute(query).all()
            pages.append([row.id for row in found[:2]])
            cursor = next_cursor(found, 2)
            if cursor is None:
                break
    assert pages == [["d", "c"], ["b", "a"], ["e"]]


def test_a_last_page_that_is_exactly_full_has_no_next_cursor() -> None:
    assert next_cursor([object(), object()], 2) is None
