"""Run the nightly pipeline for one local day on the embedded defaults and print its summary.

    python -m eastwest.demo --date 2026-11-24 --machines 700

Loads the day's telemetry into the east source (unless it is already there), runs the
``east_west_nightly`` DAG with ``dag.test()`` against the local hubs, and prints what happened.
Airflow's own log of the run goes to a file whose path is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from eastwest import localhubs
from eastwest.settings import LOCAL_TZ, PROJECT_ROOT, get_settings

NIGHTLY_DAG = PROJECT_ROOT / "dags" / "east_west_nightly.py"


@contextmanager
def output_to(path: Path):
    """Send this process's stdout/stderr (Airflow's console log) to ``path`` for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def ensure_source_day(day: date, machines: int) -> int:
    """Load the day's telemetry unless the source already holds exactly that day."""
    import sqlalchemy as sa

    from eastwest import source, sqlfiles, telemetry

    url = get_settings().source_url
    source.ensure_schema(url)
    start, end = telemetry.day_bounds_utc(day)
    with sqlfiles.engine(url).connect() as conn:
        have = conn.execute(
            sa.text(sqlfiles.render("source/count_readings_interval.sql")),
            {"start": start.strftime(source.TS_FORMAT), "end": end.strftime(source.TS_FORMAT)},
        ).scalar_one()
    if have == machines * telemetry.MINUTES:
        print(f"east source already holds {have:,} readings for {day}")
        return have
    print(f"generating {machines * telemetry.MINUTES:,} readings for {day} ({machines} machines, 600 enterprises)…")
    started = time.monotonic()
    rows = source.load_day(url, day, telemetry.generate_day(day, machines))
    print(f"loaded {rows:,} readings into {source.redact(url)} in {time.monotonic() - started:.1f}s")
    return rows


def load_dag(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_day(day: date, log_file: Path):
    """Run the nightly DAG for local ``day``; return the DagRun."""
    dag = load_dag(NIGHTLY_DAG)
    # A scheduled run covering `day` is the one at 00:30 local time the next morning.
    run_at = datetime(day.year, day.month, day.day, 0, 30, tzinfo=ZoneInfo(LOCAL_TZ)) + timedelta(days=1)
    with output_to(log_file):
        return dag.test(logical_date=run_at)


def print_summary(day: date, state: str, log_file: Path, seconds: float) -> bool:
    report_json = get_settings().reports_dir / f"nightly__{day:%Y%m%d}-{day + timedelta(days=1):%Y%m%d}" / "report.json"
    if not report_json.exists():
        print(f"the run ended {state} before writing a report; see {log_file}")
        return False
    s = json.loads(report_json.read_text())
    lines = [
        ("DAG run", f"east_west_nightly for {day} (local {LOCAL_TZ}): {state} in {seconds:.1f}s"),
        ("rows extracted", f"{s['rows_extracted']:,}" if s["rows_extracted"] is not None else "-"),
        ("raw → wire", f"{s['raw_mb']} MB raw Arrow → {s['wire_mb']} MB zstd on the wire ({s['compression_ratio']}x)"),
        (
            "transfer",
            f"{s['wire_mb_sent']} MB sent in {s['transfer_seconds']}s: {s['transfer_mb_per_s']} MB/s on the wire, "
            f"{s['transfer_logical_mb_per_s']} MB/s logical, {s['transfer_streams']} streams, "
            f"{s['chunks_skipped']} chunks already on the hub, {s['chunks_resent']} resent (SHA-256 verified)",
        ),
        ("hub", s["hub"]),
        ("remote compute", f"{s['remote_compute_seconds']}s for job {s['job']} → {s['result_rows']} result rows"),
        ("validation", s["validation"]),
        ("rows published", s["rows_published"]),
        ("warehouse", s["warehouse"]),
        ("report", s.get("report") or report_json.with_name("report.html")),
        ("Airflow log", log_file),
    ]
    width = max(len(k) for k, _ in lines)
    print()
    for key, value in lines:
        print(f"  {key:<{width}}  {value}")
    print()
    return state == "success"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eastwest.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 24), help="local day to process")
    parser.add_argument("--machines", type=int, default=700, help="machines in the park (700 ≈ 1M readings/day)")
    args = parser.parse_args(argv)

    localhubs.export_connections(Path(os.environ.get("EASTWEST_HUBS_DIR", localhubs.DEFAULT_STATE)))
    ensure_source_day(args.date, args.machines)
    log_file = get_settings().data_dir / "logs" / f"demo-{args.date}.log"
    print(f"running east_west_nightly for {args.date} on the local hubs (Airflow log: {log_file})…")
    started = time.monotonic()
    dag_run = run_day(args.date, log_file)
    state = str(getattr(dag_run.state, "value", dag_run.state))
    ok = print_summary(args.date, state, log_file, time.monotonic() - started)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
