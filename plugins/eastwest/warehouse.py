"""The east warehouse: publish a verified, validated result by replacing its partition atomically."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any

from eastwest import sqlfiles

COLUMNS = (
    "day",
    "enterprise_id",
    "machine_id",
    "readings",
    "energy_kwh",
    "running_hours",
    "utilisation",
    "p95_temperature_c",
    "anomaly_count",
)


@dataclass(frozen=True)
class PublishOutcome:
    rows_before: int
    rows_after: int
    digest_before: str
    digest_after: str

    @property
    def changed(self) -> bool:
        return self.digest_before != self.digest_after

    def describe(self) -> str:
        if not self.changed:
            return f"partition unchanged: the same {self.rows_after} rows were already published (no duplicates)"
        return f"partition replaced: {self.rows_before} rows before, {self.rows_after} rows now"


def ensure_schema(url: str) -> None:
    import sqlalchemy as sa

    with sqlfiles.engine(url).begin() as conn:
        for statement in sqlfiles.statements("warehouse/create_daily_kpis.sql"):
            conn.execute(sa.text(statement))


def _partition(scope: str, start_day: date, end_day: date) -> dict[str, str]:
    return {"scope": scope, "start_day": start_day.isoformat(), "end_day": end_day.isoformat()}


def _digest(conn: Any, partition: dict[str, str]) -> tuple[int, str]:
    import sqlalchemy as sa

    digest = hashlib.sha256()
    rows = 0
    for row in conn.execute(sa.text(sqlfiles.render("warehouse/select_daily_kpis_partition.sql")), partition):
        values = [v.isoformat() if isinstance(v, date) else v for v in row]
        digest.update(repr(values).encode())
        rows += 1
    return rows, digest.hexdigest()


def partition_rows(url: str, scope: str, start_day: date, end_day: date) -> list[dict[str, Any]]:
    """The published rows of one partition, in key order (for reports and tests)."""
    import sqlalchemy as sa

    ensure_schema(url)
    with sqlfiles.engine(url).connect() as conn:
        result = conn.execute(
            sa.text(sqlfiles.render("warehouse/select_daily_kpis_partition.sql")),
            _partition(scope, start_day, end_day),
        )
        return [{k: (v.isoformat() if isinstance(v, date) else v) for k, v in row._mapping.items()} for row in result]


def publish(
    url: str, scope: str, start_day: date, end_day: date, rows: list[dict[str, Any]], hub: str
) -> PublishOutcome:
    """Replace partition ``(scope, [start_day, end_day))`` with ``rows`` in one transaction.

    Every row must fall inside the partition, so a rerun of the same interval replaces exactly
    what the previous run wrote and never duplicates it.
    """
    import sqlalchemy as sa

    ensure_schema(url)
    outside = [r for r in rows if not (start_day.isoformat() <= str(r["day"]) < end_day.isoformat())]
    if outside:
        raise ValueError(
            f"{len(outside)} result rows fall outside the partition {start_day}..{end_day} "
            f"(first: day {outside[0]['day']}); refusing to publish"
        )
    partition = _partition(scope, start_day, end_day)
    payload = [
        {**{c: (r[c].isoformat() if isinstance(r[c], date) else r[c]) for c in COLUMNS}, "scope": scope, "hub": hub}
        for r in rows
    ]
    with sqlfiles.engine(url).begin() as conn:
        before = _digest(conn, partition)
        conn.execute(sa.text(sqlfiles.render("warehouse/delete_daily_kpis_partition.sql")), partition)
        if payload:
            conn.execute(sa.text(sqlfiles.render("warehouse/insert_daily_kpis.sql")), payload)
        after = _digest(conn, partition)
    return PublishOutcome(rows_before=before[0], rows_after=after[0], digest_before=before[1], digest_after=after[1])
