"""A demo world's rows copied out of the database and back in (COPY), so a world built once
serves many tests (tests/conftest.py) or benchmarks (bench/common.py, tiny mode)."""

from __future__ import annotations

import io

from django.db import connection

# The tables a demo world fills, parents first (a COPY checks its foreign keys at once); the
# counts' deltas last, since copying impressions and clicks in writes deltas of its own.
WORLD_TABLES = ("news_reader", "news_item", "news_impression", "news_click", "lookalike_modelrun",
                "lookalike_seedset", "lookalike_lookalikestate", "lookalike_readervector", "news_itemcountdelta")


def tables_dump() -> dict[str, bytes]:
    """Every row of WORLD_TABLES, in COPY's text format."""
    out = {}
    connection.ensure_connection()
    with connection.connection.cursor() as cur:
        for t in WORLD_TABLES:
            buf = io.BytesIO()
            with cur.copy(f"COPY {t} TO STDOUT") as copy:
                for chunk in copy:
                    buf.write(chunk)
            out[t] = buf.getvalue()
    return out


def tables_restore(tables: dict[str, bytes]) -> None:
    """The dumped rows in place of what WORLD_TABLES hold (inside the caller's transaction, if
    there is one), each sequence past them and never back: ids stay unique."""
    connection.ensure_connection()
    with connection.connection.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(WORLD_TABLES)} CASCADE")
        for t in WORLD_TABLES:
            if t == "news_itemcountdelta":  # the counts' triggers saw the rows above come in: the world's own deltas
                cur.execute("TRUNCATE news_itemcountdelta")
            with cur.copy(f"COPY {t} FROM STDIN") as copy:
                copy.write(tables[t])
            seq = cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", (t,)).fetchone()[0]
            cur.execute(f"SELECT setval(%s, GREATEST((SELECT COALESCE(MAX(id), 1) FROM {t}), "  # noqa: S608
                        f"(SELECT last_value FROM {seq})))", (seq,))


def tables_clear() -> None:
    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(WORLD_TABLES)} CASCADE")
