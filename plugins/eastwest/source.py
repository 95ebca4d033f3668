"""The east source database: load telemetry into it, extract one data interval as Arrow batches."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from eastwest import sqlfiles
from eastwest.sqlfiles import redact  # noqa: F401  (re-exported for the CLI)
from eastwest.telemetry import day_bounds_utc, schema

FETCH_ROWS = 65_536
TS_FORMAT = "%Y-%m-%d %H:%M:%S"


def ensure_schema(url: str) -> None:
    import sqlalchemy as sa

    with sqlfiles.engine(url).begin() as conn:
        for statement in sqlfiles.statements("source/create_readings.sql"):
            conn.execute(sa.text(statement))


def load_day(url: str, day: date, batches: Iterable[Any]) -> int:
    """Replace one local day of readings with ``batches``, in one transaction; return the row count."""
    import pyarrow.compute as pc
    import sqlalchemy as sa

    ensure_schema(url)
    start, end = day_bounds_utc(day)
    engine = sqlfiles.engine(url)
    rows = 0
    with engine.begin() as conn:
        conn.execute(sa.text(sqlfiles.render("source/delete_readings_interval.sql")), _bounds(start, end))
        dbapi = conn.connection.driver_connection
        cursor = dbapi.cursor()
        for batch in batches:
            batch = batch.set_column(0, "ts", pc.strftime(batch.column(0), TS_FORMAT))
            if engine.dialect.name == "postgresql":
                buffer = io.StringIO()
                writer = csv.writer(buffer)
                writer.writerows(zip(*(col.to_pylist() for col in batch.columns), strict=True))
                buffer.seek(0)
                cursor.copy_expert(sqlfiles.render("source/copy_readings.postgresql.sql"), buffer)
            else:
                cursor.executemany(sqlfiles.render("source/insert_readings.sql"), batch.to_pylist())
            rows += batch.num_rows
    return rows


def _bounds(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": start.strftime(TS_FORMAT), "end": end.strftime(TS_FORMAT)}


def extract_batches(url: str, start: datetime, end: datetime, enterprise_ids: Sequence[str] = ()) -> Iterator[Any]:
    """Yield readings with ``start <= ts < end`` (naive UTC) as Arrow batches, streamed from the DB.

    The database cursor is read ``FETCH_ROWS`` at a time (a server-side cursor on PostgreSQL), so
    memory holds one batch, never the interval.
    """
    import pyarrow as pa
    import sqlalchemy as sa

    out_schema = schema()
    statement = sa.text(sqlfiles.render("source/extract_readings.sql", enterprise_ids=bool(enterprise_ids)))
    params: dict[str, Any] = _bounds(start, end)
    if enterprise_ids:
        statement = statement.bindparams(sa.bindparam("enterprise_ids", expanding=True))
        params["enterprise_ids"] = list(enterprise_ids)
    with sqlfiles.engine(url).connect() as conn:
        result = conn.execution_options(stream_results=True, max_row_buffer=FETCH_ROWS).execute(statement, params)
        for rows in result.partitions(FETCH_ROWS):
            columns = list(zip(*rows, strict=True))
            ts = columns[0]
            ts_array = (
                pa.array(ts, pa.string()).cast(pa.timestamp("us"))
                if isinstance(ts[0], str)
                else pa.array(ts, pa.timestamp("us"))
            )
            arrays = [ts_array] + [
                pa.array(col, type=field.type) for col, field in zip(columns[1:], list(out_schema)[1:], strict=True)
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=out_schema)
