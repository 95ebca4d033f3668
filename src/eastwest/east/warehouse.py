"""The east warehouse: publish a validated result by replacing its partition in one transaction.

A target table is created from the result's Arrow schema when it is missing (the warehouse adds
``scope`` and ``hub``; the primary key is ``scope`` plus the declared keys). Publishing deletes the
run's partition (its scope and days, or its whole scope for a snapshot), bulk-ingests the result
as Arrow and records the inputs' schemas, all in one transaction: a failure anywhere leaves the
previous rows. Comparing the partition before and after (floats to a relative 1e-9) says whether anything
changed; when nothing did, the transaction is rolled back, so a rerun leaves the published rows
exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from eastwest.config import RESERVED_COLUMNS, Target
from eastwest.east import arrowdb, sql


class PublishError(ValueError):
    """A result that does not fit its target; nothing was published."""


@dataclass(frozen=True)
class PublishOutcome:
    rows_before: int
    rows_after: int
    changed: bool

    def describe(self) -> str:
        if not self.changed:
            return f"partition unchanged: the same {self.rows_after} rows were already published (no duplicates)"
        return f"partition replaced: {self.rows_before} rows before, {self.rows_after} rows now"


@dataclass(frozen=True)
class Partition:
    """The rows one run owns in a target."""

    scope: str
    start_day: date | None = None
    end_day: date | None = None

    def binds(self) -> dict[str, Any]:
        binds: dict[str, Any] = {"scope": self.scope}
        if self.start_day is not None:
            binds.update(start_day=self.start_day, end_day=self.end_day)
        return binds


def _shape(target: Target) -> dict[str, Any]:
    return {"table": target.table, "partition_column": target.partition_column, "keys": target.keys}


#: Floats of a rerun count as the same to this relative tolerance: a parallel aggregation adds in an
#: order that depends on thread scheduling, so its last bits differ from run to run.
FLOAT_RTOL = 1e-9


def _partition(conn: Any, url: str, target: Target, partition: Partition) -> Any:
    cursor = arrowdb.execute(conn, url, sql.library("select_partition.sql", **_shape(target)), partition.binds())
    table = cursor.fetch_arrow_table()
    cursor.close()
    return table


def same_rows(before: Any, after: Any) -> bool:
    """Whether two reads of a partition (in key order) hold the same rows.

    Values are compared, not types (either driver may type a column differently); floats to
    ``FLOAT_RTOL``, so that a rerun whose sums differ only in their last bits changes nothing.
    """
    import numpy as np
    import pyarrow as pa

    if before.num_rows != after.num_rows or before.column_names != after.column_names:
        return False
    for name in before.column_names:
        a, b = before.column(name), after.column(name)
        if pa.types.is_floating(a.type) and pa.types.is_floating(b.type):
            if not a.is_null().equals(b.is_null()):
                return False
            x = a.fill_null(0.0).to_numpy().astype("float64")
            y = b.fill_null(0.0).to_numpy().astype("float64")
            if not np.allclose(x, y, rtol=FLOAT_RTOL, atol=0.0, equal_nan=True):
                return False
        elif a.cast(pa.string()).to_pylist() != b.cast(pa.string()).to_pylist():
            return False
    return True


def create_table(conn: Any, url: str, target: Target, schema: Any) -> None:
    kind = arrowdb.dialect_of(url)
    columns = [
        {"name": f.name, "type": arrowdb.sql_type(kind, f.type), "key": f.name in target.keys}
        for f in schema
        if f.name not in RESERVED_COLUMNS
    ]
    cursor = conn.cursor()
    cursor.execute(sql.library("create_target.sql", table=target.table, columns=columns, keys=target.keys))
    cursor.close()


def check_result(target: Target, schema: Any, partition: Partition, table: Any) -> None:
    """Refuse a result that lacks the target's columns or has rows outside the partition."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = schema.names
    bad = [n for n in names if not sql.IDENTIFIER.fullmatch(n)]
    if bad:
        raise PublishError(f"result column {bad[0]!r} is not a plain lower-case name; alias it in the job")
    if target.partition_column in names and not pa.types.is_date(schema.field(target.partition_column).type):
        raise PublishError(
            f"partition column {target.partition_column} is {schema.field(target.partition_column).type}, "
            "not a date; cast it to a date in the job"
        )
    clash = [c for c in RESERVED_COLUMNS if c in names]
    if clash:
        raise PublishError(f"the result has column(s) {', '.join(clash)}, which the warehouse adds; rename them")
    needed = [*target.keys, *([target.partition_column] if target.partition_column else [])]
    missing = [c for c in needed if c not in names]
    if missing:
        raise PublishError(f"the result lacks the target's column(s) {', '.join(missing)}")
    if target.partition_column and partition.start_day is not None and table.num_rows:
        days = table.column(target.partition_column)
        outside = pc.sum(pc.or_(pc.less(days, partition.start_day), pc.greater_equal(days, partition.end_day)))
        if outside.as_py():
            raise PublishError(
                f"{outside.as_py()} result rows fall outside the partition {partition.start_day}..{partition.end_day} "
                f"of {target.partition_column}; refusing to publish"
            )


def publish(
    url: str,
    target: Target,
    partition: Partition,
    table: Any,
    hub: str,
    *,
    schema_records: dict[str, str] | None = None,
    dag_id: str = "",
) -> PublishOutcome:
    """Replace ``partition`` of ``target`` with Arrow ``table`` in one transaction."""
    import pyarrow as pa

    check_result(target, table.schema, partition, table)
    rows = table.num_rows
    data = table.append_column("scope", pa.array([partition.scope] * rows, pa.string())).append_column(
        "hub", pa.array([hub] * rows, pa.string())
    )
    if schema_records:
        ensure_schema_table(url)
    with arrowdb.connect(url, lock=target.table) as conn:  # concurrent runs of one target take turns
        existing = arrowdb.columns_of(conn, target.table)
        if existing is None:
            create_table(conn, url, target, table.schema)
        else:
            missing = [c for c in data.schema.names if c not in existing]
            if missing:
                raise PublishError(
                    f"table {target.table} has no column(s) {', '.join(missing)} that the result has; the job's "
                    "output changed: migrate the table (or publish to a new one) before publishing"
                )
            data = data.select([c for c in existing if c in data.schema.names])
        before = _partition(conn, url, target, partition)
        arrowdb.execute(conn, url, sql.library("delete_partition.sql", **_shape(target)), partition.binds()).close()
        if rows:
            arrowdb.ingest(conn, target.table, data)
        if schema_records:
            record_schemas(conn, url, dag_id, schema_records)
        after = _partition(conn, url, target, partition)
        changed = not same_rows(before, after)
        if changed:
            conn.commit()
        else:  # the same rows (floats to FLOAT_RTOL): keep the published ones, bit for bit
            conn.rollback()
    return PublishOutcome(rows_before=before.num_rows, rows_after=after.num_rows, changed=changed)


def partition_rows(url: str, target: Target, partition: Partition) -> list[dict[str, Any]]:
    """The published rows of one partition, in key order (for reports and tests)."""
    with arrowdb.connect(url) as conn:
        if arrowdb.columns_of(conn, target.table) is None:
            return []
        cursor = arrowdb.execute(conn, url, sql.library("select_partition.sql", **_shape(target)), partition.binds())
        rows = cursor.fetch_arrow_table().to_pylist()
        cursor.close()
    return [{k: (v.isoformat() if isinstance(v, date) else v) for k, v in row.items()} for row in rows]


# -- the inputs' schemas ---------------------------------------------------------------------------


#: Where the inputs' schemas are recorded (see ``sql/create_input_schemas.sql``).
SCHEMAS_TABLE = "eastwest_input_schemas"


def ensure_schema_table(url: str) -> None:
    """Create the schema records' table if it is missing, committed on its own (so that writers
    that record schemas in their own transactions never race to create it)."""
    with arrowdb.connect(url, lock=SCHEMAS_TABLE) as conn:
        if arrowdb.columns_of(conn, SCHEMAS_TABLE) is None:
            cursor = conn.cursor()
            cursor.execute(sql.library("create_input_schemas.sql"))
            cursor.close()
            conn.commit()


def recorded_schema(url: str, dag_id: str, name: str) -> str | None:
    """The schema input ``name`` of ``dag_id`` had when it was last published, if any."""
    with arrowdb.connect(url) as conn:
        if arrowdb.columns_of(conn, SCHEMAS_TABLE) is None:
            return None
        cursor = arrowdb.execute(conn, url, sql.library("select_input_schema.sql"), {"dag_id": dag_id, "input": name})
        found = cursor.fetchall()
        cursor.close()
    return str(found[0][0]) if found else None


def record_schemas(conn: Any, url: str, dag_id: str, schemas: dict[str, str]) -> None:
    """Record the inputs' schemas in the open transaction (the table exists: ``ensure_schema_table``)."""
    for name, text in schemas.items():
        binds = {"dag_id": dag_id, "input": name, "schema_json": text}
        arrowdb.execute(conn, url, sql.library("upsert_input_schema.sql"), binds).close()


# -- compute usage ---------------------------------------------------------------------------------

#: The columns of a ``compute_usage`` row (see ``sql/create_compute_usage.sql``).
USAGE_COLUMNS = (
    "dag_id", "run_id", "run_key", "job", "hub", "day", "policy", "failovers", "hubs_tried", "raw_bytes",
    "bytes_in", "bytes_out", "compute_seconds", "core_seconds", "cost_yuan", "succeeded", "recorded_at",
)  # fmt: skip


def record_usage(url: str, row: dict[str, Any]) -> None:
    """Record (or re-record, for a retried report) one run's hub, usage and cost in ``compute_usage``."""
    missing = [c for c in USAGE_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"a compute_usage row needs {', '.join(missing)}")
    with arrowdb.connect(url, lock="compute_usage") as conn:
        cursor = conn.cursor()
        cursor.execute(sql.library("create_compute_usage.sql"))
        cursor.close()
        binds = {"dag_id": row["dag_id"], "run_id": row["run_id"]}
        arrowdb.execute(conn, url, sql.library("delete_compute_usage.sql"), binds).close()
        arrowdb.execute(conn, url, sql.library("insert_compute_usage.sql"), row).close()
        conn.commit()


def usage_rows(url: str, dag_id: str | None = None) -> list[dict[str, Any]]:
    """The recorded ``compute_usage`` rows (of one DAG), oldest first."""
    with arrowdb.connect(url) as conn:
        if arrowdb.columns_of(conn, "compute_usage") is None:
            return []
        query = 'SELECT * FROM "compute_usage"' + (' WHERE "dag_id" = :dag_id' if dag_id else "")
        cursor = arrowdb.execute(conn, url, query + ' ORDER BY "recorded_at"', {"dag_id": dag_id} if dag_id else {})
        rows = cursor.fetch_arrow_table().to_pylist()
        cursor.close()
    return rows


def usage_rates(url: str, job: str) -> dict[str, tuple[float, float, int]]:
    """Job ``job``'s measured (seconds, core-seconds) per raw MB and run count, per hub and ``"*"`` (all)."""
    with arrowdb.connect(url) as conn:
        if arrowdb.columns_of(conn, "compute_usage") is None:
            return {}
        cursor = arrowdb.execute(conn, url, sql.library("select_usage_rates.sql"), {"job": job})
        found = cursor.fetch_arrow_table().to_pylist()
        cursor.close()
    rates = {}
    for r in found:
        mb = float(r["raw_bytes"]) / 1e6
        rates[str(r["hub"])] = (float(r["seconds"]) / mb, float(r["core_seconds"]) / mb, int(r["runs"]))
    if found:
        mb = sum(float(r["raw_bytes"]) for r in found) / 1e6
        rates["*"] = (
            sum(float(r["seconds"]) for r in found) / mb,
            sum(float(r["core_seconds"]) for r in found) / mb,
            sum(int(r["runs"]) for r in found),
        )
    return rates
