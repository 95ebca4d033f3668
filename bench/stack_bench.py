"""The real Airflow stack, run by run: what the forkserver preload in ``airflow.cfg`` saves.

    make bench-stack                                   # = .venv/bin/python bench/stack_bench.py (≈10 min)
    .venv/bin/python bench/stack_bench.py --runs 5     # more counted runs per case
    .venv/bin/python bench/stack_bench.py --report-only

Two cases, the same stack (api-server, scheduler with the LocalExecutor, dag-processor, triggerer;
a PostgreSQL metadata DB of its own), the same four local sshd hubs, the same day of demo telemetry
in a PostgreSQL source:

- **fork** (Airflow's default on Linux with Python 3.11): the executor's workers are forked from
  the scheduler; every task imports what it uses (pyarrow, polars, SQLAlchemy, the ADBC drivers,
  the SSH hook, Great Expectations, Altair).
- **forkserver + preload** (``airflow.cfg``, ``[scheduler] mp_start_method``,
  ``mp_forkserver_preload``): the workers are forked from a forkserver that imported those
  libraries once, and each task, forked from a worker, shares them.

Per case: start the stack; one uncounted warm-up run (after a scheduler start the forkserver first
imports the libraries); then ``--runs`` runs of ``east_west_analyst`` one after the other, each for
its own enterprise on one fixed hub (so every run extracts, ships, computes, validates and
publishes). Per run: trigger to ``success`` in seconds and each task's duration as the metadata DB
records it. After the runs: the proportional set size (PSS, shared pages split between the
processes that share them) of all the stack's processes, idle. The cases run one after the other,
``--rounds`` times (every second round in reverse order); medians.

Writes ``bench/stack_results.json`` and prints a markdown table. Traffic stays on loopback
(api-server 127.0.0.1:28180, hubs 127.0.0.1:23201–23204).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from eastwest_dev import fresh_pg_database, localhubs, postgres_connection, telemetry
from eastwest_dev.stack import Stack

ROOT = Path(__file__).resolve().parents[1]

WORK = ROOT / ".local" / "bench-stack"
WEST_PYTHON = ROOT / ".local" / "west-venv" / "bin" / "python"
RESULTS = ROOT / "bench" / "stack_results.json"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PORT, HUB_PORT_BASE = 28180, 23201
DAY, MACHINES, HUB = date(2026, 11, 24), 40, "west_ningxia"
DAG_ID = "east_west_analyst"
CASES = {
    "fork": {"AIRFLOW__SCHEDULER__MP_START_METHOD": "fork"},
    "forkserver + preload": {},  # airflow.cfg as shipped
}


def run_once(stack: Stack, enterprise: str) -> dict[str, Any]:
    conf = {"start_date": DAY.isoformat(), "end_date": None, "hub": HUB, "enterprise_ids": enterprise}
    started = time.monotonic()
    run_id = stack.trigger(DAG_ID, conf)
    state = stack.wait_for_run(DAG_ID, run_id, timeout=900)
    seconds = time.monotonic() - started
    if state != "success":
        raise SystemExit(f"run {run_id} ended {state}; see {stack.state_dir}")
    tis = stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
    tasks = {t["task_id"]: round(t["duration"], 2) for t in tis if t["state"] == "success" and t["duration"]}
    return {"run_id": run_id, "seconds": round(seconds, 2), "tasks": tasks}


def stack_pss_mb(stack: Stack) -> float:
    import psutil

    total = 0
    for proc in stack.processes():
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            pass
    return round(total / 1e6, 1)


def measure(case: str, env: dict[str, str], runs: int, first_enterprise: int) -> dict[str, Any]:
    with fresh_pg_database(PG_ADMIN, "eastwest_bench_stack_airflow") as db:
        stack = Stack(state_dir=WORK / "stack", port=PORT, executor="local", db_url=db, extra_env=env | CASES[case])
        try:
            up = stack.up()
            warm = run_once(stack, f"E{first_enterprise:04d}")
            counted = [run_once(stack, f"E{first_enterprise + 1 + i:04d}") for i in range(runs)]
            pss = stack_pss_mb(stack)
        finally:
            stack.down()
    print(f"{case}: stack up in {up:.0f}s, warm-up run {warm['seconds']:.1f}s, runs {[r['seconds'] for r in counted]}")
    return {"case": case, "stack_up_s": round(up, 1), "warm_up": warm, "runs": counted, "idle_pss_mb": pss}


def median_tasks(runs: list[dict[str, Any]]) -> dict[str, float]:
    names = {name for run in runs for name in run["tasks"]}
    return {n: statistics.median(r["tasks"].get(n, 0.0) for r in runs) for n in names}


def report(results: dict[str, Any]) -> str:
    of_case = {case: [m for m in results["measurements"] if m["case"] == case] for case in CASES}
    rows = {case: [r for m in found for r in m["runs"]] for case, found in of_case.items()}
    fork, preload = rows["fork"], rows["forkserver + preload"]
    per_case = {
        case: {
            "run": statistics.median(r["seconds"] for r in rows[case]),
            "tasks": median_tasks(rows[case]),
            "warm": statistics.median(m["warm_up"]["seconds"] for m in found),
            "pss": statistics.median(m["idle_pss_mb"] for m in found),
        }
        for case, found in of_case.items()
    }
    a, b = per_case["fork"], per_case["forkserver + preload"]
    lines = [
        f"{len(fork)} + {len(preload)} counted runs of `{DAG_ID}` ({MACHINES} machines' day, one enterprise, "
        f"hub {HUB}), {results['rounds']} round(s), {results['when']}.",
        "",
        "| | fork (Airflow's default) | forkserver + preload | ratio |",
        "|---|---:|---:|---:|",
        f"| **run, trigger to success** (median s) | {a['run']:.1f} | {b['run']:.1f} | **{a['run'] / b['run']:.2f}×** |",
        f"| first run after the scheduler starts (s) | {a['warm']:.1f} | {b['warm']:.1f} | {a['warm'] / b['warm']:.2f}× |",
    ]
    for task in sorted(a["tasks"], key=lambda t: -a["tasks"][t]):
        x, y = a["tasks"][task], b["tasks"].get(task, 0.0)
        lines.append(
            f"| task `{task}` (s) | {x:.2f} | {y:.2f} | {x / y:.2f}× |" if y else f"| `{task}` | {x:.2f} | – | |"
        )
    lines.append(
        f"| stack's memory, idle after the runs (PSS MB) | {a['pss']:.0f} | {b['pss']:.0f} | {b['pss'] / a['pss']:.2f}× |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="counted runs per case and round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if args.report_only:
        print(report(json.loads(RESULTS.read_text())))
        return 0

    WORK.mkdir(parents=True, exist_ok=True)
    connections = localhubs.up(WORK / "hubs", HUB_PORT_BASE, str(WEST_PYTHON))
    measurements = []
    try:
        with fresh_pg_database(PG_ADMIN, "eastwest_bench_stack") as pg:
            telemetry.load_day(pg, DAY, telemetry.generate_day(DAY, MACHINES))
            env = {
                "AIRFLOW_CONN_EAST_SOURCE": postgres_connection(pg),
                "AIRFLOW_CONN_EAST_WAREHOUSE": postgres_connection(pg),
                "EASTWEST_DATA_DIR": str(WORK / "data"),
                "EASTWEST_PROJECT_DIR": str(ROOT),
                **{f"AIRFLOW_CONN_{name.upper()}": json.dumps(conn) for name, conn in connections.items()},
            }
            enterprise = 1
            for round_no in range(args.rounds):
                order = list(CASES) if round_no % 2 == 0 else list(reversed(CASES))
                for case in order:
                    measurements.append(measure(case, env, args.runs, enterprise))
                    enterprise += args.runs + 1
    finally:
        localhubs.down(WORK / "hubs", HUB_PORT_BASE)
    results = {
        "when": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "rounds": args.rounds,
        "command": "make bench-stack",
        "measurements": measurements,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
