"""East-side database I/O: extraction and publishing, the old way (row tuples) against ADBC (Arrow).

    python bench/east_io_bench.py                     # 1,008,000 readings (700 machines), 3 rounds
    python bench/east_io_bench.py --machines 100 --rounds 1

Each case runs in its own process (peak RSS is that process's own), A and B alternating round by
round on the same data after one uncounted warm-up round, so a drift of the machine's speed hits
both; the table reports medians and the ratio of the medians. Times are of the I/O alone (the
libraries are imported before the clock starts, as in a worker). Cases:

extract
    the demo day from the east source into zstd Arrow chunks, as the ``extract`` step does it:
    ``rows`` = SQLAlchemy with a streaming cursor, Python row tuples turned into Arrow arrays (the
    code before ADBC); ``adbc`` = :func:`eastwest.east.sources.sql_batches` (record batches straight
    from the driver) into :func:`eastwest.west.wire.write_chunks`.
publish
    a result replacing its partition in one transaction: ``rows`` = SQLAlchemy ``executemany`` of
    dict rows; ``adbc`` = :func:`eastwest.east.warehouse.publish` (bulk ingest of Arrow). 700 rows
    (the nightly KPI result) and 100,000 rows.

Results go to ``bench/east_io_results.json``; BENCHMARKS.md quotes them with this command.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DAY = date(2026, 11, 24)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH = "postgresql://postgres@127.0.0.1:5432/eastwest_bench"


def sa_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://")


# -- the cases, each run in a fresh process ----------------------------------------------------------


def extract_rows(url: str, out: Path) -> int:
    """The extraction before ADBC: a streaming SQLAlchemy cursor, Python tuples → Arrow arrays."""
    import pyarrow as pa
    import sqlalchemy as sa

    from eastwest.east import sql
    from eastwest.west import wire
    from eastwest_dev import telemetry

    schema = telemetry.schema()
    start, end = telemetry.day_bounds_utc(DAY)
    text = sql.render_file(ROOT / "sql" / "source" / "extract_readings.sql")
    bounds = {"start": start.strftime("%Y-%m-%d %H:%M:%S"), "end": end.strftime("%Y-%m-%d %H:%M:%S")}

    def batches():
        with sa.create_engine(sa_url(url)).connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=65_536).execute(sa.text(text), bounds)
            for rows in result.partitions(65_536):
                columns = list(zip(*rows, strict=True))
                ts = columns[0]
                ts_array = (
                    pa.array(ts, pa.string()).cast(pa.timestamp("us"))
                    if isinstance(ts[0], str)
                    else pa.array(ts, pa.timestamp("us"))
                )
                arrays = [ts_array] + [pa.array(c, f.type) for c, f in zip(columns[1:], list(schema)[1:], strict=True)]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return wire.write_chunks(batches(), schema, wire.ChunkStore(out)).rows


def extract_adbc(url: str, out: Path) -> int:
    """The extraction step as it is: record batches from the ADBC driver into chunks."""
    from eastwest import SqlInput
    from eastwest.east import sources
    from eastwest.east.plan import Plan
    from eastwest.settings import Project
    from eastwest.west import wire
    from eastwest_dev import telemetry

    start, end = telemetry.day_bounds_utc(DAY)
    plan = Plan(
        dag_id="bench", scope="bench", run_key="bench", hub="none", job="daily_kpis",
        params={"enterprise_ids": []}, start=start.isoformat(), end=end.isoformat(),
        start_day=DAY.isoformat(), end_day=(DAY + timedelta(days=1)).isoformat(),
    )  # fmt: skip
    item = SqlInput("readings", sql="source/extract_readings.sql", time_column="ts")
    import os

    os.environ["AIRFLOW_CONN_EAST_SOURCE"] = _connection(url)
    batches = sources.sql_batches(item, plan, Project(ROOT))
    first = next(batches)

    def chained():
        yield first
        yield from batches

    return wire.write_chunks(chained(), first.schema, wire.ChunkStore(out)).rows


def result_table(rows: int) -> Any:
    import pyarrow as pa

    machines = [f"E{i % 600 + 1:04d}-M{i // 600 + 1:02d}" for i in range(rows)]
    return pa.table(
        {
            "day": pa.array([DAY] * rows, pa.date32()),
            "enterprise_id": [m[:5] for m in machines],
            "machine_id": machines,
            "readings": pa.array([1440] * rows, pa.int64()),
            "energy_kwh": [float(i % 997) for i in range(rows)],
            "utilisation": [0.5] * rows,
        }
    )


def publish_rows(url: str, rows: int) -> int:
    """Publishing before ADBC: delete the partition, executemany of dict rows, one transaction."""
    import sqlalchemy as sa

    table = result_table(rows)
    payload = [{**r, "day": r["day"].isoformat(), "scope": "bench", "hub": "h"} for r in table.to_pylist()]
    columns = ", ".join(payload[0])
    values = ", ".join(f":{c}" for c in payload[0])
    with sa.create_engine(sa_url(url)).begin() as conn:
        conn.execute(sa.text("DELETE FROM bench_rows WHERE scope = 'bench'"))
        conn.execute(sa.text(f"INSERT INTO bench_rows ({columns}) VALUES ({values})"), payload)
    return rows


def publish_adbc(url: str, rows: int) -> int:
    from eastwest import Target
    from eastwest.east import warehouse

    target = Target("bench_adbc", keys=("day", "enterprise_id", "machine_id"), partition_column="day")
    outcome = warehouse.publish(
        url, target, warehouse.Partition("bench", DAY, DAY + timedelta(days=1)), result_table(rows), "h"
    )
    return outcome.rows_after


def _connection(url: str) -> str:
    if url.startswith("sqlite:///"):
        return json.dumps({"conn_type": "sqlite", "host": url.removeprefix("sqlite:///")})
    return json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "eastwest_bench"}
    )


def run_case(case: str, url: str, rows: int) -> dict[str, Any]:
    # One-time imports (a worker pays them once per process, whatever the data) are not timed;
    # importing the ADBC drivers costs about 1.3 s (adbc_driver_manager loads pandas).
    import adbc_driver_postgresql.dbapi  # noqa: F401
    import adbc_driver_sqlite.dbapi  # noqa: F401
    import airflow.sdk  # noqa: F401
    import psycopg2  # noqa: F401
    import pyarrow  # noqa: F401
    import sqlalchemy  # noqa: F401

    import eastwest.east.arrowdb
    import eastwest.east.sources
    import eastwest.east.warehouse  # noqa: F401

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if case == "extract-rows":
            n = extract_rows(url, Path(tmp))
        elif case == "extract-adbc":
            n = extract_adbc(url, Path(tmp))
        elif case == "publish-rows":
            n = publish_rows(url, rows)
        else:
            n = publish_adbc(url, rows)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# -- set-up and the side-by-side runs -------------------------------------------------------------


def prepare(machines: int, work: Path) -> dict[str, str]:
    import sqlalchemy as sa

    from eastwest_dev import telemetry

    admin = sa.create_engine(sa_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS eastwest_bench WITH (FORCE)"))
        conn.execute(sa.text("CREATE DATABASE eastwest_bench"))
    urls = {"sqlite": f"sqlite:///{work / 'source.db'}", "postgresql": PG_BENCH}
    ddl = (
        "CREATE TABLE bench_rows (scope TEXT NOT NULL, day DATE NOT NULL, enterprise_id TEXT NOT NULL, "
        "machine_id TEXT NOT NULL, readings BIGINT, energy_kwh DOUBLE PRECISION, utilisation DOUBLE PRECISION, "
        "hub TEXT, PRIMARY KEY (scope, day, enterprise_id, machine_id))"
    )
    for url in urls.values():
        telemetry.load_day(url, DAY, telemetry.generate_day(DAY, machines))
        with sa.create_engine(sa_url(url)).begin() as conn:
            conn.execute(sa.text(ddl))
    return urls


def side_by_side(case_a: str, case_b: str, url: str, rows: int, rounds: int) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {case_a: [], case_b: []}
    for round_ in range(rounds + 1):  # round 0 warms the page cache and is not counted
        for case in (case_a, case_b):
            out = subprocess.run(
                [sys.executable, __file__, "case", case, url, str(rows)], capture_output=True, text=True, check=True
            )
            if round_:
                results[case].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary: dict[str, Any] = {}
    for case, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        summary[case] = {
            "seconds": round(seconds, 3),
            "rows_per_s": round(runs[0]["rows"] / seconds),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs)),
            "rows": runs[0]["rows"],
        }
    summary["speedup"] = round(summary[case_a]["seconds"] / summary[case_b]["seconds"], 2)
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "case":
        print(json.dumps(run_case(argv[1], argv[2], int(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machines", type=int, default=700)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        urls = prepare(args.machines, Path(tmp))
        report: dict[str, Any] = {"machines": args.machines, "rounds": args.rounds, "when": datetime.now().isoformat()}
        for db, url in urls.items():
            report[f"extract/{db}"] = side_by_side("extract-rows", "extract-adbc", url, 0, args.rounds)
            for rows in (700, 100_000):
                report[f"publish {rows}/{db}"] = side_by_side("publish-rows", "publish-adbc", url, rows, args.rounds)
    (HERE / "east_io_results.json").write_text(json.dumps(report, indent=1))
    print(
        f"{'case':<22} {'before s':>9} {'rows/s':>10} {'RSS MB':>7} {'ADBC s':>8} {'rows/s':>10} {'RSS MB':>7} {'speed-up':>8}"
    )
    for name, r in report.items():
        if not isinstance(r, dict):
            continue
        a = r.get("extract-rows") or r.get("publish-rows")
        b = r.get("extract-adbc") or r.get("publish-adbc")
        print(
            f"{name:<22} {a['seconds']:>9} {a['rows_per_s']:>10,} {a['peak_rss_mb']:>7} "
            f"{b['seconds']:>8} {b['rows_per_s']:>10,} {b['peak_rss_mb']:>7} {r['speedup']:>7}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
