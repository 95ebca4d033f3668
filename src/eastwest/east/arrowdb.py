"""Arrow-native database access through ADBC: query results stream out as Arrow record batches and
results are bulk-ingested from Arrow, on SQLite and PostgreSQL, never through Python row tuples.

SQL is written with SQLAlchemy-style named binds (``:start``, ``:ids`` for a list) and compiled
here into the driver's own placeholders (``?`` for SQLite, ``$1`` for PostgreSQL), lists expanded.
A ``:`` that is not a bind must be escaped as ``\\:`` (as in ``sqlalchemy.text``).
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

#: Rows per record batch read from SQLite (the driver's default of 1024 costs 3x in throughput).
BATCH_ROWS = 65_536


def dialect_of(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    raise ValueError(f"unsupported database URL {url.split('://')[0]}://…; use sqlite:/// or postgresql://")


#: How long a SQLite reader waits out another connection's commit before it fails (ms).
SQLITE_BUSY_MS = 60_000


@contextmanager
def connect(url: str, *, lock: str | None = None) -> Iterator[Any]:
    """An ADBC DB-API connection (autocommit off: nothing is visible before ``commit()``); always closed.

    ``lock`` names what the connection writes (a table): connections holding the same name take
    turns from the first statement until they close, across processes. On PostgreSQL it is a
    session advisory lock, so concurrent writers of one table neither race to create it nor trip
    over each other's rows; on SQLite, which lets one writer in at a time anyway, every writer of
    the database takes one file lock first, so two writers never deadlock upgrading their reads.
    """
    kind = dialect_of(url)
    with _writer_lock(url, kind, lock):
        if kind == "sqlite":
            import adbc_driver_sqlite.dbapi as sqlite_driver

            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite_driver.connect(str(path))
            cursor = conn.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
            cursor.close()
        else:
            import adbc_driver_postgresql.dbapi as pg_driver

            conn = pg_driver.connect("postgresql://" + url.split("://", 1)[1])
            if lock:
                key = int.from_bytes(hashlib.sha256(f"eastwest:{lock}".encode()).digest()[:8], "big", signed=True)
                cursor = conn.cursor()
                cursor.execute(f"SELECT pg_advisory_lock({key})")  # held until the connection closes
                cursor.close()
        try:
            yield conn
        finally:
            conn.close()


@contextmanager
def _writer_lock(url: str, kind: str, lock: str | None) -> Iterator[None]:
    if kind != "sqlite" or not lock:
        yield
        return
    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".writer-lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
        yield


def _bindable(kind: str, value: Any) -> Any:
    if kind == "sqlite":  # SQLite keeps times as text 'YYYY-MM-DD HH:MM:SS' and days as 'YYYY-MM-DD'
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return value.strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(value, date):
            return value.isoformat()
    return value


def compile_sql(url: str, sql: str, params: Mapping[str, Any] | None = None) -> tuple[str, list[Any]]:
    """``sql`` with named binds → the driver's placeholders and the positional values."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.dialects.postgresql.base import PGDialect

    kind = dialect_of(url)
    params = dict(params or {})
    statement = sa.text(sql)
    binds: list[Any] = []
    for name in statement._bindparams:  # only the names the statement uses
        if name not in params:
            raise KeyError(f"the query needs a value for :{name}")
        value = params[name]
        if isinstance(value, list | tuple):
            values = [_bindable(kind, v) for v in value]  # an empty list is typed as text (PostgreSQL)
            binds.append(sa.bindparam(name, value=values, expanding=True, type_=None if values else sa.String()))
        else:
            binds.append(sa.bindparam(name, value=_bindable(kind, value)))
    if binds:
        statement = statement.bindparams(*binds)
    # The base PostgreSQL dialect: the psycopg one would add ::TYPE casts guessed from the values.
    dialect = sqlite.dialect(paramstyle="qmark") if kind == "sqlite" else PGDialect(paramstyle="numeric_dollar")
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    order = compiled.positiontup or []
    if kind == "postgresql":  # $n placeholders may repeat; each number is bound once
        order = list(dict.fromkeys(order))
    return compiled.string, [compiled.params[name] for name in order]


def execute(conn: Any, url: str, sql: str, params: Mapping[str, Any] | None = None) -> Any:
    """Run one statement on an open connection; return its cursor."""
    text, values = compile_sql(url, sql, params)
    cursor = conn.cursor()
    cursor.execute(text, values or None)
    return cursor


def read_batches(url: str, sql: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """Stream a query's result as Arrow record batches (one batch in memory at a time).

    SQLite: the driver infers each column's type from the first batch, so a REAL column that is
    NULL throughout it would come out as int64; ``CAST(x AS REAL)`` in the query fixes the type.
    PostgreSQL: the driver materialises a query with bound parameters whole, so it runs inside a
    server-side cursor read ``BATCH_ROWS`` at a time (apache/arrow-adbc#2029).
    """
    with connect(url) as conn:
        yield from _read_on(conn, url, sql, params or {})


def read_slices(url: str, sql: str, slices: Sequence[Mapping[str, Any]], workers: int = 2) -> Iterator[Any]:
    """Stream the results of ``sql`` for each parameter set of ``slices``, in order, read ``workers`` at a time.

    Each worker thread has its own connection; the drivers release the GIL while they read, so
    slices are read in parallel while the caller consumes the earlier ones. At most ``workers + 1``
    slices are held in memory, so a long interval never is.
    """
    import threading
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    local = threading.local()
    stack = ExitStack()
    lock = threading.Lock()

    def read(params: Mapping[str, Any]) -> list[Any]:
        if not hasattr(local, "conn"):
            with lock:
                local.conn = stack.enter_context(connect(url))
        return list(_read_on(local.conn, url, sql, params))

    with stack, ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="extract") as pool:
        pending: deque[Any] = deque()
        todo = iter(slices)
        for params in todo:
            pending.append(pool.submit(read, params))
            if len(pending) > workers:
                break
        while pending:
            batches = pending.popleft().result()
            next_params = next(todo, None)
            if next_params is not None:
                pending.append(pool.submit(read, next_params))
            yield from batches


def _read_on(conn: Any, url: str, sql: str, params: Mapping[str, Any]) -> Iterator[Any]:
    text, values = compile_sql(url, sql, params)
    cursor = conn.cursor()
    try:
        if dialect_of(url) == "sqlite":
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
            cursor.execute(text, values or None)
            for batch in cursor.fetch_record_batch():
                if batch.num_rows:
                    yield batch
        else:
            cursor.execute(f"DECLARE eastwest_extract NO SCROLL CURSOR FOR {text}", values or None)
            cursor.adbc_statement.set_options(**{"adbc.postgresql.use_copy": "false"})
            while True:
                cursor.execute(f"FETCH FORWARD {BATCH_ROWS} FROM eastwest_extract")
                table = cursor.fetch_arrow_table()
                if table.num_rows == 0:
                    break
                yield from table.combine_chunks().to_batches()
            conn.rollback()  # read-only: ends the transaction that holds the cursor
    finally:
        cursor.close()


def read_table(url: str, sql: str, params: Mapping[str, Any] | None = None) -> Any:
    """A (small) query result as one Arrow table."""
    with connect(url) as conn:
        cursor = execute(conn, url, sql, params)
        try:
            return cursor.fetch_arrow_table()
        finally:
            cursor.close()


def sql_type(kind: str, arrow_type: Any) -> str:
    """The column type a table created from an Arrow schema gets."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return "BOOLEAN" if kind == "postgresql" else "INTEGER"
    if pa.types.is_integer(t):
        return "BIGINT" if kind == "postgresql" else "INTEGER"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "DOUBLE PRECISION" if kind == "postgresql" else "REAL"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        if kind == "postgresql":
            return "TIMESTAMP WITH TIME ZONE" if t.tz else "TIMESTAMP"
        return "TEXT"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "TEXT"
    raise TypeError(f"no warehouse column type for Arrow type {t}; cast the column in the job")


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def columns_of(conn: Any, table: str) -> dict[str, str] | None:
    """The existing table's columns (name → driver type), or ``None`` if it does not exist."""
    try:
        schema = conn.adbc_get_table_schema(table)
    except Exception:  # the drivers raise their own NOT_FOUND errors
        conn.rollback()
        return None
    return {f.name: str(f.type) for f in schema}


def ingest(conn: Any, table: str, data: Any) -> int:
    """Append Arrow ``data`` (table or batch reader) to ``table`` on an open connection; return rows."""
    cursor = conn.cursor()
    try:
        return int(cursor.adbc_ingest(table, data, mode="append") or 0)
    finally:
        cursor.close()
