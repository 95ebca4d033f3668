"""Run any DAG of the project locally, on the embedded defaults, for a day or an interval.

    python -m eastwest_dev.demo --dag east_west_nightly --date 2026-11-24
    python -m eastwest_dev.demo --dag east_west_orders --date 2026-11-20 --end-date 2026-11-22
    python -m eastwest_dev.demo --dag east_west_analyst --date 2026-11-24 --conf '{"enterprise_ids": "E0001"}'

(``make run DAG=… DATE=… [END_DATE=…] [CONF=…]`` and ``make demo`` call this.) It puts the demo
data the DAG reads in place unless it is there already (the park's telemetry in the east source,
the enterprises' order files in the landing folder), runs the DAG with ``dag.test()`` against the
local hubs (a scheduled DAG once per day, an unscheduled one once for the whole interval) and
prints each run's summary. Airflow's own log goes to a file whose path is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from eastwest.settings import LOCAL_TZ, get_settings
from eastwest_dev import REPO_ROOT, localhubs

#: The project whose DAGs run: this repository, or EASTWEST_PROJECT_DIR.
PROJECT_DIR = Path(os.environ.get("EASTWEST_PROJECT_DIR") or REPO_ROOT).resolve()
DAGS_DIR = PROJECT_DIR / "dags"


@contextmanager
def output_to(path: Path) -> Iterator[None]:
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


def ensure_demo_data(days: list[date], machines: int) -> None:
    """Load each day's telemetry into the east source and its order files into the landing folder."""
    from eastwest.east.connections import database_url, redact
    from eastwest_dev import orders, telemetry

    url = database_url("east_source")
    for day in days:
        have = telemetry.count_day(url, day)
        if have == machines * telemetry.MINUTES:
            print(f"east source already holds {have:,} readings for {day}")
        else:
            print(f"generating {machines * telemetry.MINUTES:,} readings for {day} ({machines} machines)…")
            started = time.monotonic()
            rows = telemetry.load_day(url, day, telemetry.generate_day(day, machines))
            print(f"loaded {rows:,} readings into {redact(url)} in {time.monotonic() - started:.1f}s")
        files = orders.write_landing(day, machines, get_settings().data_dir)
        print(f"{len(files)} order files for {day} in {files[0].parent if files else '-'}")


def load_dag(dag_id: str) -> Any:
    path = DAGS_DIR / f"{dag_id}.py"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in DAGS_DIR.glob("*.py")))
        raise SystemExit(f"error: no DAG file {path}; DAGs of this project: {known}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_dag(dag: Any, days: list[date], conf: dict[str, Any], log_file: Path) -> list[tuple[str, float]]:
    """Run ``dag`` over ``days``; return (state, seconds) per run."""
    results = []
    runs: list[dict[str, Any]]
    if dag.timetable.can_be_scheduled:
        tz = ZoneInfo(str(dag.timezone.name) if hasattr(dag.timezone, "name") else LOCAL_TZ)
        # A daily run triggered late the next day gets the data interval that ends that morning,
        # which starts on `day`: the plan turns it into the local day `day`.
        runs = [{"logical_date": datetime(d.year, d.month, d.day, 23, 59, tzinfo=tz) + timedelta(days=1)} for d in days]
    else:
        base = {"start_date": days[0].isoformat(), "end_date": days[-1].isoformat()}
        runs = [{"run_conf": {**base, **conf}}]
    for kwargs in runs:
        started = time.monotonic()
        with output_to(log_file):
            dag_run = dag.test(**kwargs)
        results.append((str(getattr(dag_run.state, "value", dag_run.state)), time.monotonic() - started))
    return results


def print_summary(summary: dict[str, Any], state: str, seconds: float, log_file: Path) -> None:
    s = summary
    transfer = (
        f"{s['wire_mb_sent']} MB sent in {s['transfer_seconds']}s: {s['transfer_mb_per_s']} MB/s on the wire, "
        f"{s['transfer_logical_mb_per_s']} MB/s logical, {s['transfer_streams']} streams, "
        f"{s['chunks_skipped']} chunks already on the hub, {s['chunks_resent']} resent (SHA-256 verified)"
    )
    lines = [
        ("DAG run", f"{s['dag_id']} for {s.get('interval', 'a full snapshot')}: {state} in {seconds:.1f}s"),
        ("inputs", ", ".join(f"{name} {rows:,} rows" for name, rows in (s.get("inputs") or {}).items()) or "-"),
        ("extract", f"{s['rows_extracted']:,} rows in {s['extract_seconds']}s" if s["rows_extracted"] else "-"),
        ("raw → wire", f"{s['raw_mb']} MB raw Arrow → {s['wire_mb']} MB zstd on the wire ({s['compression_ratio']}x)"),
        ("transfer", transfer if s["wire_mb_sent"] is not None else "-"),
        ("hub", f"{s['hub']} ({s.get('hub_requested')}: {s.get('placement')})"),
        ("failovers", s.get("failovers") if s.get("failovers") != "none" else "none"),
        (
            "cost",
            f"¥{s.get('cost_yuan', 0):.6f} ({s.get('core_seconds')} core-s measured on the hub, "
            f"{(s.get('bytes_to_hubs') or 0) / 1e6:.2f} MB received)",
        ),
        ("job bundle", (s.get("job_bundle") or "-")[:16]),
        ("remote compute", f"{s['remote_compute_seconds']}s for job {s['job']} → {s['result_rows']} result rows"),
        ("validation", s["validation"]),
        ("rows published", f"{s['rows_published']} in {s['target']}"),
        ("warehouse", s["warehouse"]),
        ("report", s.get("report") or "-"),
        ("Airflow log", log_file),
    ]
    width = max(len(k) for k, _ in lines)
    print()
    for key, value in lines:
        print(f"  {key:<{width}}  {value}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eastwest_dev.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--dag", default="east_west_nightly", help="DAG id (a file in dags/)")
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 24), help="first local day")
    parser.add_argument("--end-date", type=date.fromisoformat, default=None, help="last local day (inclusive)")
    parser.add_argument("--machines", type=int, default=700, help="machines in the park (700 ≈ 1M readings/day)")
    parser.add_argument("--conf", type=json.loads, default={}, help="extra form fields of an unscheduled DAG (JSON)")
    parser.add_argument("--no-data", action="store_true", help="do not generate demo data")
    args = parser.parse_args(argv)
    end = args.end_date or args.date
    if end < args.date:
        parser.error("--end-date is before --date")
    days = [args.date + timedelta(days=i) for i in range((end - args.date).days + 1)]

    localhubs.export_connections(Path(os.environ.get("EASTWEST_HUBS_DIR", localhubs.DEFAULT_STATE)))
    if not args.no_data:
        ensure_demo_data(days, args.machines)
    dag = load_dag(args.dag)
    log_file = get_settings().data_dir / "logs" / f"{args.dag}-{args.date}.log"
    print(f"running {args.dag} for {args.date}..{end} on the local hubs (Airflow log: {log_file})…")
    started = time.time()
    results = run_dag(dag, days, args.conf, log_file)
    reports = sorted(
        (p for p in get_settings().reports_dir.glob(f"{args.dag}.*/report.json") if p.stat().st_mtime >= started),
        key=lambda p: p.stat().st_mtime,
    )
    ok = True
    for (state, seconds), report in zip(results, reports, strict=False):
        print_summary(json.loads(report.read_text()), state, seconds, log_file)
    if len(reports) < len(results):
        print(f"{len(results) - len(reports)} run(s) ended before writing a report; see {log_file}")
    ok = all(state == "success" for state, _ in results) and len(reports) == len(results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
