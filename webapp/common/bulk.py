"""COPY into a model's table: rows or whole columns, in Postgres's COPY text format.

Every concrete field the caller leaves out takes the field's default, so a column added to
the model is filled here too, and the writers (the bulk backfill, the benchmarks) keep
working after a schema change."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence

import numpy as np


def copy_text(value) -> str:
    """A value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool | np.bool_):
        return "t" if value else "f"
    if isinstance(value, bytes | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return "{" + ",".join(map(str, value)) + "}"
    if isinstance(value, dict):
        return json.dumps(value).replace("\\", "\\\\")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _fields(model, given: set[str]):
    return [f for f in model._meta.concrete_fields if not f.primary_key or {f.name, f.attname} & given]


def _copy(cursor, model, fields, text: str, table: str | None = None) -> None:
    columns = ", ".join(f.column for f in fields)
    raw = getattr(cursor, "cursor", cursor)  # Django's cursor wrapper or psycopg's cursor
    with raw.copy(f"COPY {table or model._meta.db_table} ({columns}) FROM STDIN") as copy:  # noqa: S608 (our names)
        copy.write(text)


def copy_rows(cursor, model, rows: Iterable[dict]) -> None:
    """COPY rows (field name -> value; the primary key too, or left to its sequence)."""
    rows = list(rows)
    fields = _fields(model, set(rows[0]) if rows else set())
    defaults = {f.attname: f.get_default() for f in fields}
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join(copy_text(row.get(f.attname, row.get(f.name, defaults[f.attname]))) for f in fields))
        buf.write("\n")
    _copy(cursor, model, fields, buf.getvalue())


def copy_columns(cursor, model, columns: dict[str, Sequence], n: int, *, table: str | None = None) -> None:
    """COPY n rows given column-wise (field name -> n values already in COPY text form, or
    numbers); the other fields take their defaults. For millions of rows: one join per row,
    no per-value conversion beyond str(). `table`: another table of the model's columns (a
    staging copy) to COPY into."""
    fields = _fields(model, set(columns))
    parts = []
    for f in fields:
        values = columns.get(f.attname, columns.get(f.name))
        if values is None:
            parts.append([copy_text(f.get_default())] * n)
        else:
            assert len(values) == n, f"{f.name}: {len(values)} values for {n} rows"
            parts.append(values if isinstance(values, list) and (not n or isinstance(values[0], str))
                         else [str(v) for v in np.asarray(values).tolist()])
    _copy(cursor, model, fields, "".join("\t".join(row) + "\n" for row in zip(*parts, strict=True)) if n else "",
          table)


def timestamps_text(epoch_seconds: np.ndarray) -> list[str]:
    """Epoch seconds -> UTC timestamps in COPY text form (vectorised)."""
    t = np.asarray(epoch_seconds, np.float64)
    return (np.datetime_as_string((t * 1e6).astype("datetime64[us]"), unit="us") + "+00:00").tolist()


# Postgres's binary COPY: its types of fixed width, as numpy reads them (network byte order).
_BINARY = {"int4": ">i4", "int8": ">i8", "float8": ">f8", "bool": "?", "int2": ">i2",
           "timestamptz": ">i8"}  # microseconds since 2000-01-01 UTC
_PG_EPOCH = 946_684_800  # 2000-01-01 in Unix seconds
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def copy_out_columns(cursor, query: str, params: dict, types: Sequence[str]) -> list[np.ndarray]:
    """The rows of `query` (its columns of `types`, each a key of _BINARY, none NULL) as one
    array per column, read by binary COPY: millions of rows without a Python object per
    value. A timestamptz column comes back as float Unix seconds."""
    raw = getattr(cursor, "cursor", cursor)
    buf = io.BytesIO()
    with raw.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)", params) as copy:
        for block in copy:
            buf.write(block)
    data = buf.getbuffer()
    if bytes(data[:11]) != _SIGNATURE:
        raise ValueError("not a binary COPY stream")
    start = 19 + int.from_bytes(data[15:19], "big")  # the header and its extension area
    row = np.dtype([("fields", ">i2")] + [x for n, t in enumerate(types)
                                          for x in ((f"len{n}", ">i4"), (f"c{n}", _BINARY[t]))])
    count, rest = divmod(len(data) - start - 2, row.itemsize)  # the trailer: a field count of -1
    if rest:
        raise ValueError(f"the COPY's rows are not {types}: a column is NULL or of another width")
    rows = np.frombuffer(data, row, count=count, offset=start)
    for n, t in enumerate(types):
        if count and not (rows[f"len{n}"] == np.dtype(_BINARY[t]).itemsize).all():
            raise ValueError(f"column {n} of the COPY has NULLs or is not {t}")
    if count and not (rows["fields"] == len(types)).all():
        raise ValueError(f"the COPY's rows do not have {len(types)} columns")
    return [rows[f"c{n}"].astype(np.float64) / 1e6 + _PG_EPOCH if t == "timestamptz"
            else rows[f"c{n}"].astype(rows[f"c{n}"].dtype.newbyteorder("=")) for n, t in enumerate(types)]
