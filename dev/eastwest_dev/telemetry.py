"""Deterministic east-side telemetry: a manufacturing park's machines, one reading per minute.

About 600 enterprises, each with one or more machines, report power, temperature, vibration and
status every minute. The same (day, machines, seed) always gives the same rows. ``bad=True`` makes
a day of broken data (nulls, negative power, impossible temperatures) to exercise validation.

The load carries structure a forecast can learn, and noise it cannot:

- each machine keeps its rated power (5–200 kW), its shift (starting 06:00–09:00, 8–15 hours)
  and whether it works Saturdays (half of them) or Sundays (one in ten) from day to day;
- on a working day a machine runs its shift (1 % of machine-days it stays down); on its weekend
  days 95 % of the time; on public holidays (``HOLIDAYS`` in ``include/jobs/_energy.py``, the
  one calendar the data and the model share) 5 % of the time; otherwise it idles at 4 % of rated;
- each enterprise's activity drifts from day to day with its order book (``enterprise_level``:
  AR(1), φ 0.8, sd about 0.13), each machine-day adds its own (sd 0.03), and each minute its own
  load (normal around 78 % of rated × that level, sd 0.08); 3 % of on-shift minutes idle, 0.2 %
  fault. Yesterday says more about today than the same day last week does.

    python -m eastwest_dev.telemetry --date 2026-11-24 --machines 700            # into the source DB
    python -m eastwest_dev.telemetry --date 2026-11-24 --landing-dir landing/    # also as Parquet

``load_day`` writes a day into the east source database the way a source system would (the
project's ``sql/source/create_readings.sql`` schema), bulk-ingested as Arrow through ADBC.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from eastwest.east import arrowdb, sql
from eastwest.settings import LOCAL_TZ
from eastwest_dev import REPO_ROOT

SOURCE_SQL = REPO_ROOT / "sql" / "source"
TS_FORMAT = "%Y-%m-%d %H:%M:%S"

ENTERPRISES = 600
MINUTES = 24 * 60
MACHINES_PER_BATCH = 40
STATUSES = ("running", "idle", "fault")
_MACHINE_STREAM = 0x3A  # the random stream of what a machine keeps from day to day
_LEVEL_STREAM = 0x3B  # the random stream of the enterprises' daily activity


@functools.cache
def holidays() -> frozenset[date]:
    """The public holidays of ``include/jobs/_energy.py`` (loaded from its file: it is a job module)."""
    path = REPO_ROOT / "include" / "jobs" / "_energy.py"
    spec = importlib.util.spec_from_file_location("eastwest_dev._energy_calendar", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(module.HOLIDAYS)


def _machines(first: int, n: int, seed: int) -> tuple[Any, ...]:
    """What machines ``first .. first+n-1`` keep every day: rated kW, shift start and length, and
    whether they work Saturdays and Sundays."""
    import numpy as np

    kept = np.array([np.random.default_rng([seed, _MACHINE_STREAM, first + i]).random(5) for i in range(n)]).reshape(
        n, 5
    )
    rated = 5.0 + 195.0 * kept[:, 0:1]
    shift_start = 6 + (kept[:, 1:2] * 4).astype(int)
    shift_len = 8 + (kept[:, 2:3] * 8).astype(int)
    return rated, shift_start, shift_len, kept[:, 3:4] < 0.5, kept[:, 4:5] < 0.1


def schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("ts", pa.timestamp("us"), nullable=False),
            pa.field("enterprise_id", pa.string(), nullable=False),
            pa.field("machine_id", pa.string(), nullable=False),
            pa.field("power_kw", pa.float64()),
            pa.field("temperature_c", pa.float64()),
            pa.field("vibration_mm_s", pa.float64()),
            pa.field("status", pa.string()),
        ]
    )


def day_bounds_utc(day: date, tz: str = LOCAL_TZ) -> tuple[datetime, datetime]:
    """The UTC (naive) start and end of a local calendar day."""
    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))
    end = start + timedelta(days=1)
    utc = ZoneInfo("UTC")
    return start.astimezone(utc).replace(tzinfo=None), end.astimezone(utc).replace(tzinfo=None)


def machine_ids(machines: int) -> list[tuple[str, str]]:
    """(enterprise, machine) pairs: machines spread round-robin over the park's enterprises."""
    per_enterprise: dict[int, int] = {}
    ids = []
    for i in range(machines):
        enterprise = i % ENTERPRISES + 1
        per_enterprise[enterprise] = per_enterprise.get(enterprise, 0) + 1
        ids.append((f"E{enterprise:04d}", f"E{enterprise:04d}-M{per_enterprise[enterprise]:02d}"))
    return ids


@functools.cache
def enterprise_level(day: date, seed: int) -> Any:
    """Each enterprise's activity on ``day`` (mean 1): an order book that drifts, so a busy day
    tends to follow a busy day. AR(1) with φ = 0.8 and shocks of sd 0.08, built from the shocks
    of the 30 days before (φ^30 < 0.002), each day's drawn from its own seed: any day alone gives
    the same level."""
    import numpy as np

    level = np.ones(ENTERPRISES)
    for back in range(30, -1, -1):
        shock = np.random.default_rng([seed, _LEVEL_STREAM, day.toordinal() - back]).normal(0, 0.08, ENTERPRISES)
        level = 1.0 + 0.8 * (level - 1.0) + shock
    return level


def _working(day: date, saturdays: Any, sundays: Any, rng: Any) -> Any:
    """Which machines run their shift on ``day``: 99 % on working days; on weekends 95 % of those
    that work that day; on public holidays 5 %."""
    n = saturdays.shape[0]
    if day in holidays():
        return rng.random((n, 1)) < 0.05
    if day.isoweekday() == 6:
        return saturdays & (rng.random((n, 1)) < 0.95)
    if day.isoweekday() == 7:
        return sundays & (rng.random((n, 1)) < 0.95)
    return rng.random((n, 1)) < 0.99


def generate_day(day: date, machines: int, *, seed: int = 20260101, bad: bool = False) -> Iterator[Any]:
    """Yield a local day's readings as Arrow record batches of ``MACHINES_PER_BATCH`` machines."""
    import numpy as np
    import pyarrow as pa

    start_utc, _ = day_bounds_utc(day)
    minutes = np.arange(MINUTES)
    ts_minutes = np.datetime64(start_utc, "us") + minutes.astype("timedelta64[m]")
    local_hour = (minutes // 60) % 24
    ids = machine_ids(machines)
    out_schema = schema()
    for first in range(0, machines, MACHINES_PER_BATCH):
        chunk = ids[first : first + MACHINES_PER_BATCH]
        rng = np.random.default_rng([seed, day.toordinal(), first])
        n = len(chunk)
        rated, shift_start, shift_len, saturdays, sundays = _machines(first, n, seed)
        active = _working(day, saturdays, sundays, rng)
        level = np.clip(
            enterprise_level(day, seed)[[int(e[1:]) - 1 for e, _ in chunk]][:, None] + rng.normal(0, 0.03, size=(n, 1)),
            0.5,
            1.28,
        )
        on_shift = (((local_hour[None, :] - shift_start) % 24) < shift_len) & active
        running = on_shift & (rng.random((n, MINUTES)) > 0.03)
        fault = rng.random((n, MINUTES)) < 0.002
        load = np.clip(rng.normal(0.78 * level, 0.08, size=(n, MINUTES)), 0.2, 1.0)
        power = np.where(running, rated * load, rated * 0.04) * ~fault
        temperature = 24.0 + 40.0 * np.where(running, load, 0.05) + rng.normal(0, 1.2, size=(n, MINUTES))
        vibration = 1.5 + 3.0 * np.where(running, load, 0.0) + np.abs(rng.normal(0, 0.25, size=(n, MINUTES)))
        spikes = rng.random((n, MINUTES)) < 0.001
        vibration = np.where(spikes, vibration * rng.uniform(4, 8, size=(n, MINUTES)), vibration)
        status = np.where(fault, 2, np.where(running, 0, 1))

        power_mask = temperature_mask = None
        if bad:
            broken = rng.random((n, MINUTES))
            power = np.where(broken < 0.01, -abs(power) - 50.0, power)
            temperature = np.where((broken > 0.5) & (broken < 0.51), 999.0, temperature)
            power_mask = (broken > 0.9) & (broken < 0.92)
            temperature_mask = (broken > 0.3) & (broken < 0.31)

        yield pa.RecordBatch.from_arrays(
            [
                pa.array(np.tile(ts_minutes, n)),
                pa.array(np.repeat([e for e, _ in chunk], MINUTES)),
                pa.array(np.repeat([m for _, m in chunk], MINUTES)),
                pa.array(np.round(power, 3).ravel(), mask=None if power_mask is None else power_mask.ravel()),
                pa.array(
                    np.round(temperature, 2).ravel(),
                    mask=None if temperature_mask is None else temperature_mask.ravel(),
                ),
                pa.array(np.round(vibration, 3).ravel()),
                pa.array(np.array(STATUSES)[status].ravel()),
            ],
            schema=out_schema,
        )


def write_landing(batches: Iterator[Any], landing_dir: Path, day: date, fmt: str = "parquet") -> Path:
    """Write a day's batches as one Parquet (or CSV) file under ``landing_dir/day=YYYY-MM-DD/``."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    target_dir = landing_dir / f"day={day.isoformat()}"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"readings.{fmt}"
    partial = target.with_name(target.name + ".partial")
    out_schema = schema()
    writer = pq.ParquetWriter(partial, out_schema) if fmt == "parquet" else pacsv.CSVWriter(partial, out_schema)
    with writer:
        for batch in batches:
            writer.write_batch(batch)
    partial.replace(target)
    return target


def ensure_source(url: str) -> None:
    """Create the source's ``readings`` table if it is missing."""
    with arrowdb.connect(url) as conn:
        cursor = conn.cursor()
        for statement in sql.statements((SOURCE_SQL / "create_readings.sql").read_text()):
            cursor.execute(statement)
        cursor.close()
        conn.commit()


def _bounds(day: date) -> dict[str, Any]:
    start, end = day_bounds_utc(day)
    return {"start": start, "end": end}


def load_day(url: str, day: date, batches: Iterator[Any]) -> int:
    """Replace one local day of readings with ``batches`` in one transaction; return the row count."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ensure_source(url)
    rows = 0
    with arrowdb.connect(url) as conn:
        delete = sql.render_file(SOURCE_SQL / "delete_readings_interval.sql")
        arrowdb.execute(conn, url, delete, _bounds(day)).close()
        for batch in batches:
            if arrowdb.dialect_of(url) == "sqlite":  # SQLite keeps times as text
                batch = batch.set_column(
                    0, pa.field("ts", pa.string()), pc.strftime(batch.column(0).cast(pa.timestamp("s")), TS_FORMAT)
                )
            rows += batch.num_rows
            arrowdb.ingest(conn, "readings", pa.Table.from_batches([batch]))
        conn.commit()
    return rows


def count_day(url: str, day: date) -> int:
    """How many readings the source holds for a local day."""
    ensure_source(url)
    table = arrowdb.read_table(url, sql.render_file(SOURCE_SQL / "count_readings_interval.sql"), _bounds(day))
    return int(table.column(0)[0].as_py())


def main(argv: list[str] | None = None) -> int:
    from eastwest.east.connections import database_url, redact

    parser = argparse.ArgumentParser(prog="eastwest_dev.telemetry", description="Generate a day of park telemetry.")
    parser.add_argument("--date", type=date.fromisoformat, required=True, help="local day, YYYY-MM-DD")
    parser.add_argument("--machines", type=int, default=700, help="machines in the park (700 ≈ 1M rows/day)")
    parser.add_argument("--bad", action="store_true", help="inject nulls and impossible values")
    parser.add_argument("--source-url", default=None, help="database URL (default: the east_source connection)")
    parser.add_argument("--landing-dir", type=Path, default=None, help="also write Parquet files here")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = parser.parse_args(argv)
    if args.machines < 1:
        parser.error("--machines must be at least 1")
    url = args.source_url or database_url("east_source")
    rows = load_day(url, args.date, generate_day(args.date, args.machines, bad=args.bad))
    print(f"loaded {rows} readings for {args.date} ({args.machines} machines) into {redact(url)}")
    if args.landing_dir:
        path = write_landing(
            generate_day(args.date, args.machines, bad=args.bad), args.landing_dir, args.date, args.format
        )
        print(f"landed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
