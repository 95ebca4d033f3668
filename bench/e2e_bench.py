"""The whole nightly pipeline against the stock Airflow way, at 1M, 10M and 50M readings.

    make bench-e2e                                        # = .venv/bin/python bench/e2e_bench.py (root)
    .venv/bin/python bench/e2e_bench.py --sizes 70,700    # a quick run (machines; 1,440 readings each)
    .venv/bin/python bench/e2e_bench.py --report-only     # the tables and the chart from the results

One local day of a park of N machines (700 → 1,008,000 readings, 7,000 → 10M, 35,000 → 50.4M) sits
in PostgreSQL (database ``eastwest_e2e``: east source and warehouse; loaded once, then laid out in
time order as a source appended minute by minute is, with ``random_page_cost = 1.1`` and no JIT). One western hub, a real
``sshd`` in its own network namespace behind 200 Mbit/s + 30 ms (``eastwest_dev.wanlab``). Both
pipelines run with ``dag.test()`` in a fresh process each, same data, same link, same hub:

ours
    ``dags/east_west_nightly.py``: extract to zstd Arrow chunks, ship, compute ``daily_kpis`` on the
    hub, fetch, validate (Great Expectations), publish (replace the day's partition), clean up.
stock
    ``bench/stock_way/stock_nightly.py``, only stock operators: SQL → CSV → ``SFTPOperator`` →
    ``SSHOperator`` running ``bench/stock_way/stock_kpis.py`` (pandas) → ``SFTPOperator`` →
    pandas ``to_sql``. It logs in with a second, unrestricted key (the engine's key runs only the
    runner) and runs the east's Python on the hub, which has pandas.

Both results are read back from the warehouse and checked equal. Per step: seconds (the task
instance's start to end) and peak RSS, east (the run's process and its children; ``dag.test()``
runs every task in one process, so a step's peak includes what earlier steps kept) and west (every
process in the hub's namespace). Lower bounds, each measured alone in the same invocation: the wire
bytes at the link rate, the job's own step on the hub's Python (``runner`` job step in a fresh
process over the same-sized input), the database's own read (the extraction query through ADBC,
discarded) and write (the result ingested in one transaction). Before the first size, one uncounted
warm-up run of each way at the smallest size (the job bundle is installed, the page cache warm).

``dag.test()`` itself is timed alone (a one-task no-op DAG in a fresh process, median of three) and
reported apart: both ways pay it. Writes ``bench/e2e_results.json`` and ``bench/e2e_steps.png``,
prints markdown tables; the Airflow log goes to ``.local/bench/e2e/bench.log``. Needs root.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from eastwest_dev import postgres_connection

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
WORK = ROOT / ".local" / "bench" / "e2e"
WEST_PYTHON = ROOT / ".local" / "west-venv" / "bin" / "python"
STOCK = ROOT / "bench" / "stock_way"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "eastwest_e2e"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
HUB = "west_guizhou"
RATE_MBIT, RTT_MS = 200, 30
FIRST_DAY = date(2026, 10, 1)
RESULTS = ROOT / "bench" / "e2e_results.json"
CHART = ROOT / "bench" / "e2e_steps.png"
KEYS = ("day", "enterprise_id", "machine_id")
STOCK_DEPS = ("pandas", "numpy", "python-dateutil", "six", "tzdata")
VALUES = (
    "readings",
    "energy_kwh",
    "running_hours",
    "utilisation",
    "p95_temperature_c",
    "anomaly_count",
    "min_power_kw",
    "max_temperature_c",
    "null_readings",
)


def say(text: str) -> None:
    print(text, flush=True)


# -- the worker: one DAG run in this (fresh) process ------------------------------------------------------


def load_dag(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def worker(way: str, day: date, out: Path) -> None:
    import pendulum
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from eastwest.settings import get_settings

    if way == "ours":
        dag = load_dag(ROOT / "dags" / "east_west_nightly.py")
        after = day + timedelta(days=1)  # a run late the next day covers `day`
        kwargs: dict[str, Any] = {
            "logical_date": pendulum.datetime(after.year, after.month, after.day, 23, 59, tz="Asia/Shanghai")
        }
    elif way == "stock":
        dag = load_dag(STOCK / "stock_nightly.py")
        kwargs = {}
    else:
        dag = load_dag(STOCK / "harness_noop.py")
        kwargs = {}
    started = time.time()
    run = dag.test(**kwargs)
    ended = time.time()
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id)
        ).all()
        steps = [
            {
                "task": ti.task_id,
                "state": str(getattr(ti.state, "value", ti.state)),
                "start": ti.start_date.timestamp() if ti.start_date else None,
                "end": ti.end_date.timestamp() if ti.end_date else None,
            }
            for ti in tis
        ]
    steps.sort(key=lambda s: s["start"] or math.inf)
    report = None
    if way == "ours":
        reports = sorted(
            get_settings().reports_dir.glob(f"{dag.dag_id}.*/report.json"), key=lambda p: p.stat().st_mtime
        )
        report = json.loads(reports[-1].read_text()) if reports else None
    state = str(getattr(run.state, "value", run.state))
    out.write_text(json.dumps({"state": state, "start": started, "end": ended, "steps": steps, "report": report}))


def bound_worker(kind: str, day: date, out: Path) -> None:
    """One lower bound, measured alone in this fresh process (libraries imported before the clock)."""
    import adbc_driver_postgresql.dbapi  # noqa: F401  (the driver loads before the clock, as in a warm worker)
    import pyarrow as pa

    from eastwest.east import arrowdb, sources, sql
    from eastwest_dev import telemetry

    result: dict[str, Any] = {}
    if kind == "db_read":
        text = sql.render_file(ROOT / "sql" / "source" / "extract_readings.sql")
        start, end = telemetry.day_bounds_utc(day)
        slices = [{"start": a, "end": b} for a, b in sources.time_slices(start, end)]
        started = time.monotonic()
        rows = sum(batch.num_rows for batch in arrowdb.read_slices(PG_URL, text, slices, sources.READERS))
        result = {"seconds": time.monotonic() - started, "rows": rows}
    elif kind == "db_write":
        table = arrowdb.read_table(PG_URL, "SELECT * FROM daily_kpis WHERE day = :day", {"day": day})
        table = pa.Table.from_batches(table.to_batches())
        with arrowdb.connect(PG_URL) as conn:
            arrowdb.execute(conn, PG_URL, "DROP TABLE IF EXISTS e2e_write_bound").close()
            arrowdb.execute(conn, PG_URL, "CREATE TABLE e2e_write_bound (LIKE daily_kpis)").close()
            conn.commit()
        started = time.monotonic()
        with arrowdb.connect(PG_URL) as conn:
            rows = arrowdb.ingest(conn, "e2e_write_bound", table)
            conn.commit()
        result = {"seconds": time.monotonic() - started, "rows": rows}
    out.write_text(json.dumps(result))


# -- sampling memory --------------------------------------------------------------------------------------


class Timeline:
    """Summed RSS of the run's process tree (east) and of the hub's namespace (west), every 0.2 s."""

    def __init__(self, ns: str, pid: int) -> None:
        from transfer_bench import _descendants, _rss_kb

        self._rss, self._desc = _rss_kb, _descendants
        self.ns, self.pid = ns, pid
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            west = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout.split()
            east = sum(self._rss(p) for p in self._desc(self.pid))
            self.samples.append((time.time(), east, sum(self._rss(p) for p in west)))
            self._stop.wait(0.2)

    def peak(self, start: float | None = None, end: float | None = None) -> tuple[int, int]:
        """Peak (east, west) MB between ``start`` and ``end`` (epoch seconds)."""
        inside = [
            s for s in self.samples if (start is None or s[0] >= start - 0.2) and (end is None or s[0] <= end + 0.2)
        ]
        if not inside:
            return 0, 0
        return round(max(s[1] for s in inside) / 1024), round(max(s[2] for s in inside) / 1024)

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- set-up -------------------------------------------------------------------------------------------------


def ensure_database() -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN.replace("postgresql://", "postgresql+psycopg2://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": DB_NAME}).first():
            conn.execute(sa.text(f"CREATE DATABASE {DB_NAME}"))
        # The source fits in memory, as a tuned one's hot days do: random reads cost about what
        # sequential ones do (else PostgreSQL scans all days and sorts for each hour it is asked),
        # and queries this simple gain nothing from JIT compilation.
        conn.execute(sa.text(f"ALTER DATABASE {DB_NAME} SET random_page_cost = 1.1"))
        conn.execute(sa.text(f"ALTER DATABASE {DB_NAME} SET jit = off"))
    admin.dispose()


def ensure_day(day: date, machines: int) -> None:
    from eastwest_dev import telemetry

    if telemetry.count_day(PG_URL, day) == machines * telemetry.MINUTES:
        return
    say(f"  loading {machines * telemetry.MINUTES:,} readings for {day} into {DB_NAME} (once) …")
    started = time.monotonic()
    telemetry.load_day(PG_URL, day, telemetry.generate_day(day, machines))
    cluster()
    say(f"  loaded in {time.monotonic() - started:.0f} s")


def cluster() -> None:
    """Lay the table out in time order, as a source appended minute by minute is (the generator
    writes machine by machine, which would make PostgreSQL sort every slice it reads)."""
    from eastwest.east import arrowdb

    with arrowdb.connect(PG_URL) as conn:
        cursor = conn.cursor()
        cursor.execute("CLUSTER readings USING readings_ts_machine")
        cursor.execute("ANALYZE readings")
        cursor.close()
        conn.commit()


def environment(link: Any, day: date) -> dict[str, str]:
    home = WORK / "airflow"
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            [
                {
                    "name": "dags-folder",
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {},
                },
                {
                    "name": "bench-stock-way",
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(STOCK)},
                },
            ]
        ),
        "GX_ANALYTICS_ENABLED": "false",
        "EASTWEST_DATA_DIR": str(WORK / "data"),
        "EASTWEST_PROJECT_DIR": str(ROOT),
        "EASTWEST_HUBS": HUB,
        "EASTWEST_DEFAULT_HUB": HUB,
        "AIRFLOW_CONN_EAST_SOURCE": postgres_connection(PG_URL),
        "AIRFLOW_CONN_EAST_WAREHOUSE": postgres_connection(PG_URL),
        f"AIRFLOW_CONN_{HUB.upper()}": json.dumps(link.connection),
        "AIRFLOW_CONN_E2E_PLAIN": json.dumps(link.baseline_connection),
        "E2E_WORK": str(WORK / "stock"),
        "E2E_HUB_DIR": str(link.hub.root),
        "E2E_HUB_PYTHON": str(WORK / "stock-hub-venv" / "bin" / "python"),
        "E2E_DB": PG_URL,
        "E2E_DAY": day.isoformat(),
    }


def stock_hub_python() -> Path:
    """A Python with pandas (the pins of requirements.txt) that the hub's user may run: the stock way's."""
    venv = WORK / "stock-hub-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        pins = [
            line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.split("==")[0] in STOCK_DEPS
        ]
        uv = str(ROOT / ".venv" / "bin" / "uv")
        subprocess.run([uv, "venv", "-q", "--clear", "--python", str(WEST_PYTHON.resolve()), str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *pins], check=True)
        (venv / ".installed").touch()
    return python


def reset_hub(link: Any) -> None:
    """Empty the hub's data (the deployed runner, job bundles and the stock script stay)."""
    from eastwest_dev import localhubs

    root = link.hub.root
    for sub in ("chunks", "scratch", "jobs", "log", "inbox", "outbox"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
        subprocess.run(["chown", f"{localhubs.hub_user()}:", str(root / sub)], check=True)
    shutil.copy(STOCK / "stock_kpis.py", root / "stock_kpis.py")
    shutil.rmtree(WORK / "stock", ignore_errors=True)
    shutil.rmtree(WORK / "data" / "staging", ignore_errors=True)


# -- one run ------------------------------------------------------------------------------------------------


def run_way(way: str, day: date, link: Any, log: Path, *, reset: bool = True) -> dict[str, Any]:
    if reset:
        reset_hub(link)
    out = WORK / f"{way}.json"
    out.unlink(missing_ok=True)
    with open(log, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, __file__, "worker", way, day.isoformat(), str(out)],
            env=environment(link, day),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        with Timeline(link.ns, proc.pid) as memory:
            proc.wait()
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"the {way} run failed (exit {proc.returncode}); see {log}")
    run = json.loads(out.read_text())
    if run["state"] != "success":
        raise RuntimeError(f"the {way} run ended {run['state']}; see {log}")
    for step in run["steps"]:
        step["seconds"] = round(step["end"] - step["start"], 2) if step["start"] and step["end"] else None
        step["east_mb"], step["west_mb"] = memory.peak(step["start"], step["end"])
    run["seconds"] = round(run["end"] - run["start"], 2)
    run["east_mb"], run["west_mb"] = memory.peak()
    return run


def harness(link: Any, day: date, log: Path, runs: int = 3) -> float:
    """Seconds ``dag.test()`` of a one-task no-op DAG takes in a fresh process (median of ``runs``)."""
    import statistics

    return statistics.median(run_way("noop", day, link, log, reset=False)["seconds"] for _ in range(runs))


def measure_bound(kind: str, day: date, link: Any) -> float:
    out = WORK / f"{kind}.json"
    subprocess.run(
        [sys.executable, __file__, "bound", kind, day.isoformat(), str(out)], env=environment(link, day), check=True
    )
    return json.loads(out.read_text())["seconds"]


def job_bound(machines: int) -> dict[str, Any]:
    """The runner's job step alone on the hub's Python over one day of ``machines`` (hub_memory_bench)."""
    import hub_memory_bench

    from eastwest.west import runner

    root = hub_memory_bench.prepare(1, machines)
    return hub_memory_bench.run(root, runner.PARTITION_RAW_BYTES)


def same_results(day: date) -> tuple[bool, int]:
    """Our published partition equals the stock way's (keys exactly, values to 1e-9 relative)."""
    from eastwest.east import arrowdb

    ours = arrowdb.read_table(PG_URL, "SELECT * FROM daily_kpis WHERE day = :day", {"day": day})
    stock = arrowdb.read_table(PG_URL, "SELECT * FROM daily_kpis_stock WHERE day = :day", {"day": day.isoformat()})
    a = ours.to_pandas().assign(day=lambda f: f["day"].astype(str)).sort_values(list(KEYS)).reset_index(drop=True)
    b = stock.to_pandas().assign(day=lambda f: f["day"].astype(str)).sort_values(list(KEYS)).reset_index(drop=True)
    if len(a) != len(b) or not (a[list(KEYS)].values == b[list(KEYS)].values).all():
        return False, len(a)
    for column in VALUES:
        x, y = a[column].astype(float).to_numpy(), b[column].astype(float).to_numpy()
        both_nan = (x != x) & (y != y)
        close = abs(x - y) <= 1e-9 * abs(y).clip(min=1.0)
        if not (close | both_nan).all():
            say(f"  {column} differs: {int((~(close | both_nan)).sum())} rows")
            return False, len(a)
    return True, len(a)


def measure_size(machines: int, day: date, link: Any, log: Path) -> dict[str, Any]:
    ensure_day(day, machines)
    row: dict[str, Any] = {"machines": machines, "readings": machines * 1440, "day": day.isoformat()}
    for way in ("stock", "ours"):
        say(f"  {way} …")
        row[way] = run_way(way, day, link, log)
        say(
            f"    {row[way]['seconds']:.1f} s; steps: "
            + ", ".join(f"{s['task']} {s['seconds']}" for s in row[way]["steps"])
        )
    row["same_result"], row["result_rows"] = same_results(day)
    report = row["ours"]["report"] or {}
    wire_bytes = ((report.get("wire_mb_sent") or 0) + (report.get("wire_mb_received") or 0)) * 1e6
    bounds = {
        "wire": wire_bytes / (RATE_MBIT * 1e6 / 8),
        "job": job_bound(machines)["seconds"],
        "db_read": measure_bound("db_read", day, link),
        "db_write": measure_bound("db_write", day, link),
    }
    row["bounds"] = {k: round(v, 2) for k, v in bounds.items()}
    row["bound_sum"] = round(sum(bounds.values()), 2)
    say(f"  lower bounds {row['bounds']} (sum {row['bound_sum']} s); same result: {row['same_result']}")
    return row


# -- report -------------------------------------------------------------------------------------------------


def summary_table(results: dict[str, Any]) -> str:
    h = results["harness_seconds"]
    lines = [
        f"| readings | stock way s | ours s | ours vs stock | net of dag.test ({h} s): stock / ours s | net ratio "
        "| lower bounds s (wire + job + db read + db write) | ours net ÷ bounds "
        "| peak RSS east MB stock / ours | peak RSS hub MB stock / ours | same result |",
        "|" + "---|" * 11,
    ]
    for r in results["rows"]:
        b, stock, ours = r["bounds"], r["stock"]["seconds"], r["ours"]["seconds"]
        lines.append(
            f"| {r['readings']:,} | {stock} | {ours} | {stock / ours:.1f}× "
            f"| {stock - h:.1f} / {ours - h:.1f} | {(stock - h) / (ours - h):.1f}× "
            f"| {r['bound_sum']} ({b['wire']} + {b['job']} + {b['db_read']} + {b['db_write']}) "
            f"| {(ours - h) / r['bound_sum']:.2f}× "
            f"| {r['stock']['east_mb']:,} / {r['ours']['east_mb']:,} | {r['stock']['west_mb']:,} / {r['ours']['west_mb']:,} "
            f"| {'yes' if r['same_result'] else 'NO'} ({r['result_rows']:,} rows) |"
        )
    return "\n".join(lines)


def steps_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| readings | way | step | seconds | peak RSS east MB | peak RSS hub MB |", "|" + "---|" * 6]
    for r in rows:
        for way in ("stock", "ours"):
            for s in r[way]["steps"]:
                lines.append(
                    f"| {r['readings']:,} | {way} | {s['task']} | {s['seconds']} | {s['east_mb']:,} | {s['west_mb']:,} |"
                )
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    x = [r["readings"] / 1e6 for r in rows]
    for ax, way in zip(axes, ("stock", "ours"), strict=True):
        tasks = list(dict.fromkeys(s["task"] for r in rows for s in r[way]["steps"]))
        for task in tasks:
            y = [next((s["seconds"] for s in r[way]["steps"] if s["task"] == task), None) for r in rows]
            ax.plot(x, y, "o-", label=task)
        ax.plot(x, [r[way]["seconds"] for r in rows], "k--", label="whole run")
        if way == "ours":
            ax.plot(x, [r["bound_sum"] for r in rows], "k:", label="sum of lower bounds")
        ax.set(xscale="log", yscale="log", xlabel="readings (millions)", title=f"{way}: seconds per step")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("seconds")
    fig.suptitle(f"Nightly pipeline over {RATE_MBIT} Mbit/s + {RTT_MS} ms: the stock way vs ours")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_report(results: dict[str, Any]) -> None:
    print(summary_table(results))
    print()
    print(steps_table(results["rows"]))


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["worker"]:
        worker(args_in[1], date.fromisoformat(args_in[2]), Path(args_in[3]))
        return 0
    if args_in[:1] == ["bound"]:
        bound_worker(args_in[1], date.fromisoformat(args_in[2]), Path(args_in[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="700,7000,35000", help="machines per size, comma-separated (1,440 readings each)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--chart", type=Path, default=CHART)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(args_in)
    if args.report_only:
        results = json.loads(args.results.read_text())
        print_report(results)
        chart(results["rows"], args.chart)
        return 0
    if os.geteuid() != 0:
        print(
            "error: the benchmark emulates a WAN link with network namespaces and tc; run it as root", file=sys.stderr
        )
        return 1
    from eastwest_dev import localhubs
    from eastwest_dev.wanlab import WanLink

    sizes = [int(s) for s in args.sizes.split(",")]
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / "bench.log"
    log.unlink(missing_ok=True)
    started = time.monotonic()
    ensure_database()
    home = WORK / "airflow"
    home.mkdir(exist_ok=True)
    rows = []
    with WanLink(
        "e2e", index=12, state_dir=WORK / "hubs", west_python=str(WEST_PYTHON), rate_mbit=RATE_MBIT, rtt_ms=RTT_MS,
        baseline_login=True,
    ) as link:  # fmt: skip
        localhubs.grant_traverse(stock_hub_python().parent, localhubs.hub_user())
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "airflow"), "db", "migrate"],
            env=environment(link, FIRST_DAY), check=True, capture_output=True,
        )  # fmt: skip
        days = {m: FIRST_DAY + timedelta(days=i) for i, m in enumerate(sizes)}
        say(f"warm-up at {sizes[0]} machines (not counted) …")
        ensure_day(days[sizes[0]], sizes[0])
        for way in ("stock", "ours"):
            run_way(way, days[sizes[0]], link, log)
        harness_s = harness(link, days[sizes[0]], log)
        say(f"dag.test() itself (a one-task no-op DAG, fresh process): {harness_s:.2f} s, paid by both ways")
        for machines in sizes:
            say(f"{machines:,} machines ({machines * 1440:,} readings) on {days[machines]}:")
            rows.append(measure_size(machines, days[machines], link, log))
    results = {
        "command": " ".join([".venv/bin/python bench/e2e_bench.py", *args_in]),
        "when": datetime.now().isoformat(timespec="minutes"),
        "link": f"{RATE_MBIT} Mbit/s + {RTT_MS} ms",
        "harness_seconds": round(harness_s, 2),
        "rows": rows,
        "seconds": round(time.monotonic() - started),
    }
    args.results.write_text(json.dumps(results, indent=1))
    print()
    print_report(results)
    chart(rows, args.chart)
    print(f"\nresults: {args.results}; chart: {args.chart}; log: {log} ({results['seconds']} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
