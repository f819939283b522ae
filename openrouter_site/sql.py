"""Plain SQL for the statements the settlement writer runs for every batch, where the ORM's query
building cost several times the statement itself (``bench/settle.py`` measures it)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

MAX_PARAMETERS = 30_000  # per statement: below PostgreSQL's 65,535 and SQLite's 32,766


def marks(count: int) -> str:
    """``%s, %s, …``: the placeholders of an ``IN (…)`` list of ``count`` values."""
    return ", ".join(["%s"] * count)


def row_lock() -> str:
    """`` FOR UPDATE`` where the database locks rows (PostgreSQL); SQLite locks the whole database on write."""
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def rows_insert(*, table: str, columns: Sequence[str], rows: Sequence[Sequence], suffix: str = "") -> None:
    """``INSERT INTO table (columns) VALUES (...) suffix`` for each of ``rows``. ``suffix`` is e.g. an
    ``ON CONFLICT ...`` clause.

    PostgreSQL without a suffix: ``COPY ... FROM STDIN``. Django's psycopg cursor binds parameters on
    the client, so each row of an ``executemany`` reached PostgreSQL as its own statement text to
    parse and plan: about 166 µs of PostgreSQL's CPU per request at c=16 (a generation and a ledger
    entry each), a sixth of this 2-core machine at 2,000 req/s. COPY parses rows, not statements;
    constraints hold as for ``INSERT`` (a repeated unique key fails the batch). Otherwise (SQLite,
    upserts) ``executemany``: the statement text is the same whatever the row count, so psycopg
    converts its placeholders once and pipelines the rows; a multi-row ``VALUES`` measured slower
    (a new text for each row count)."""
    if not rows:
        return
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and not suffix:
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks(len(columns))})" + (f" {suffix}" if suffix else "")
        cursor.executemany(sql, rows)


def ids_present(*, table: str, column: str, ids: Sequence) -> set:
    """Which of ``ids`` are in ``table.column``. PostgreSQL gets one array parameter (``= ANY``), so
    the text is the same for any count (psycopg's query cache); SQLite an ``IN`` list."""
    if not ids:
        return set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SELECT {column} FROM {table} WHERE {column} = ANY(%s)", [list(ids)])
            return {row[0] for row in cursor.fetchall()}
        found: set = set()
        for first in range(0, len(ids), MAX_PARAMETERS):
            chunk = list(ids[first:first + MAX_PARAMETERS])
            cursor.execute(f"SELECT {column} FROM {table} WHERE {column} IN ({marks(len(chunk))})", chunk)
            found.update(row[0] for row in cursor.fetchall())
        return found
