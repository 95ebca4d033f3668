"""Placement benchmark: ``hub=auto`` (each policy) against one fixed hub and against round-robin.

    make bench-placement                                     # = .venv/bin/python bench/placement_bench.py
    .venv/bin/python bench/placement_bench.py --quick        # a 10-run day
    .venv/bin/python bench/placement_bench.py --rounds 3     # every strategy 3 times, medians (3× as long)
    .venv/bin/python bench/placement_bench.py --report-only  # the table again, from the results JSON

Four western hubs, each a real ``sshd`` in its own network namespace behind its own emulated link
(``eastwest_dev.wanlab``: ``tc`` tbf for the rate, the delay relay for the round trip). Each
connection declares its emulated link (``eastwest_link_mb_s``, ``eastwest_rtt_ms``), its region's
prices (``DEFAULT_PROFILES``) and 1–2 compute slots; the same slots are in each hub's
``limits.json``, so a hub queues jobs beyond them (the machine has 2 cores).

Every strategy runs the same *day*: 20 runs of both jobs (``daily_kpis``; ``energy_per_unit``, which
reads the same day's readings plus its orders) over days of 20–600 machines (2–56 MB raw Arrow,
0.3–7 MB of zstd chunks), arriving in a fixed order and executed by ``--concurrency`` workers (4).
Each run does what the DAG does on the hub side, through the project's own code:
``placing.place`` → ``steps.ship`` → compute (``jobs.submit`` + ``jobs.watch`` inside
``placing.on_hub``, as the compute operator does) → ``steps.fetch``, then its ``compute_usage`` row
(``report.record_usage``), which later placements learn their rates from. Extraction is done once,
before any strategy; validate, publish and cleanup are left out (east-side work, identical for
every strategy).

Before each strategy every hub is emptied (chunks, scratch, bundles, jobs, logs); the readings of
five fixed days are shipped to fixed hubs (data already there); the warehouse's ``compute_usage``
is reset to the same history (each job once on each hub, run at start-up); placement records,
reservations and the probe cache are removed. Every strategy starts from the same state. The
strategies run one after the other, fixed hubs alternating with the others (a drift in the shared
machine's load then falls on both kinds); ``--rounds N`` repeats them (every second round in reverse
order) and reports medians.

Per strategy: makespan (first run's start to the last run's end), total cost in ¥ (what
``placing.usage`` charges: each run's core-seconds measured on its hub × the hub's price per
core-hour + the bytes each hub received × its price per GB), mean run time, MB shipped, the hubs
used, the median time placement took (survey + decide + record), where the CPU went (this process;
the hubs' sshd and runner commands; the jobs), and the CPU seconds other processes on the machine
used meanwhile (the machine's busy time less all of that; the machine is shared with other
engineers' tests). Each strategy waits (``--wait-quiet``, at most 2 minutes) until other processes
use less than ``--noisy`` of a core, and one during which they used more runs again
(``--retries``), keeping the quietest attempt. Regret: makespan ÷ the best fixed hub's makespan and
cost ÷ the cheapest fixed hub's cost, both measured in the same invocation (the best fixed hub in
hindsight).

Needs root (network namespaces, tc). Writes ``bench/placement_results.json`` (every run's hub,
times, estimate and placement reason) and prints a markdown table; the project's log goes to
``.local/bench-placement/bench.log``. Traffic stays on loopback and 198.18.41–44.0/30 (relay ports
127.0.0.1:23041–23044); everything is torn down on exit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".local" / "bench-placement"
DATA_DIR = WORK / "data"
WEST_PYTHON = ROOT / ".local" / "west-venv" / "bin" / "python"
RESULTS = ROOT / "bench" / "placement_results.json"

#: The emulated links and compute slots. Rates are a tenth of the regions' declared defaults (a
#: pipeline's share of a shared link) so that shipping a bench-sized day (a few MB of zstd Arrow)
#: takes about as long as computing it; round trips are the regions' defaults. Prices are
#: DEFAULT_PROFILES'; slots are 1–2 because this machine has 2 cores.
LINKS: dict[str, dict[str, Any]] = {
    "west_guizhou": {"index": 41, "rate_mbit": 40, "rtt_ms": 18, "slots": 2},
    "west_neimenggu": {"index": 42, "rate_mbit": 20, "rtt_ms": 25, "slots": 2},
    "west_gansu": {"index": 43, "rate_mbit": 10, "rtt_ms": 24, "slots": 1},
    "west_ningxia": {"index": 44, "rate_mbit": 30, "rtt_ms": 20, "slots": 1},
}
HUBS = tuple(LINKS)

FIRST_DAY = date(2026, 11, 1)
#: Machines reporting on each day of the day's runs (one machine-day ≈ 92 KB raw, ≈ 10 KB shipped).
MACHINES = (400, 60, 250, 20, 500, 120, 350, 40, 300, 180, 450, 600)
#: Days (indexes into MACHINES) whose ``energy_per_unit`` also runs; it reads the same readings.
ORDERS_DAYS = (0, 2, 4, 5, 6, 8, 10, 11)
#: Days whose readings are already on a hub when the day starts.
SEEDS = {4: "west_gansu", 10: "west_gansu", 6: "west_neimenggu", 11: "west_guizhou", 0: "west_ningxia"}
QUICK_DAYS = 6
QUICK_ORDERS_DAYS = (0, 2, 4, 5)
#: The history placement starts from: one run of each job on each hub, on this day.
CALIBRATION_DAY, CALIBRATION_MACHINES = date(2026, 10, 30), 300

NIGHTLY, ORDERS = "east_west_nightly", "east_west_orders"
POLL_INTERVAL = 1.0  # the compute operator polls at most every 2 s; 1 s keeps the quantisation small
HUB_DATA_DIRS = ("scratch", "jobs", "chunks", "bundles", "log")

log = logging.getLogger("placement_bench")


@dataclass(frozen=True)
class Run:
    """One run of the day: its position in the arrival order, its DAG (job) and day."""

    n: int
    dag_id: str
    day: date
    machines: int
    scope: str = "nightly"

    @property
    def job(self) -> str:
        return "daily_kpis" if self.dag_id == NIGHTLY else "energy_per_unit"

    @property
    def label(self) -> str:
        return f"{self.job}@{self.day:%m-%d}({self.machines})"


def day_runs(quick: bool) -> list[Run]:
    """The day's runs in arrival order: each day's KPIs, then the previous selected day's orders."""
    days = range(QUICK_DAYS if quick else len(MACHINES))
    with_orders = QUICK_ORDERS_DAYS if quick else ORDERS_DAYS
    order: list[tuple[str, int]] = []
    pending: list[int] = []
    for i in days:
        order.append((NIGHTLY, i))
        order += [(ORDERS, d) for d in pending]
        pending = [i] if i in with_orders else []
    order += [(ORDERS, d) for d in pending]
    return [Run(n, dag, FIRST_DAY + timedelta(days=i), MACHINES[i]) for n, (dag, i) in enumerate(order)]


def seeds(runs: list[Run]) -> dict[date, str]:
    days = {r.day for r in runs}
    return {FIRST_DAY + timedelta(days=i): hub for i, hub in SEEDS.items() if FIRST_DAY + timedelta(days=i) in days}


@dataclass(frozen=True)
class Strategy:
    name: str
    hub: str | None = None  # a fixed hub; None: round-robin (policy None) or auto
    policy: str | None = None
    deadline_s: int | None = None

    @property
    def fixed(self) -> bool:
        return self.hub is not None

    def hub_for(self, run: Run) -> str:
        if self.hub is not None:
            return self.hub
        return "auto" if self.policy else HUBS[run.n % len(HUBS)]


def strategies(deadline_s: int) -> list[Strategy]:
    """Every strategy, in the table's order."""
    return [
        *(Strategy(f"always {hub}", hub=hub) for hub in HUBS),
        Strategy("round-robin"),
        Strategy("auto fastest", policy="fastest"),
        Strategy("auto cheapest", policy="cheapest"),
        Strategy(f"auto cheapest within {deadline_s} s", policy="cheapest", deadline_s=deadline_s),
    ]


def run_order(chosen: list[Strategy], rounds: int) -> list[Strategy]:
    """Fixed hubs and the others alternate, so that a drift in the machine's load (it is shared) falls
    on both kinds; every second round runs in the reverse order."""
    fixed, other = [s for s in chosen if s.fixed], [s for s in chosen if not s.fixed]
    mixed = [s for pair in zip(fixed, other, strict=False) for s in pair]
    mixed += fixed[len(other) :] + other[len(fixed) :]
    return [s for n in range(rounds) for s in (mixed if n % 2 == 0 else mixed[::-1])]


# -- the east side: workloads, data, extraction -------------------------------------------------------


class East:
    """The two workloads (as in dags/east_west_nightly.py and dags/east_west_orders.py), their run
    contexts and job specs."""

    def __init__(self) -> None:
        from eastwest import LandingFiles, SqlInput, Target, Workload
        from eastwest.east.steps import RunContext
        from eastwest.settings import Project

        project = Project(ROOT)
        readings = SqlInput("readings", sql="source/extract_readings.sql", time_column="ts")
        workloads = {
            NIGHTLY: Workload(
                job="daily_kpis",
                inputs=readings,
                target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
            ),
            ORDERS: Workload(
                job="energy_per_unit",
                inputs=(readings, LandingFiles("orders", glob="landing/orders/{{ ds }}/*.csv", columns={"units": "int64"})),
                target=Target("energy_per_unit", keys=("day", "enterprise_id", "product"), partition_column="day"),
            ),
        }  # fmt: skip
        self.specs = {dag: wl.check(project) for dag, wl in workloads.items()}
        self.ctx = {dag: RunContext.create(dag, wl, project) for dag, wl in workloads.items()}

    def plan(self, run: Run, *, hub: str = "auto", policy: str = "fastest", deadline_s: int | None = None) -> Any:
        from eastwest.east.plan import make_plan

        ctx = self.ctx[run.dag_id]
        return make_plan(
            ctx.workload, self.specs[run.dag_id], ctx.settings, dag_id=run.dag_id, scope=run.scope, hub=hub,
            start_day=run.day, end_day=run.day + timedelta(days=1), policy=policy, deadline_s=deadline_s,
        )  # fmt: skip


def load_source(days: dict[date, int]) -> None:
    """Each day's telemetry in the east source (kept between invocations) and its order files."""
    from eastwest.east.connections import database_url
    from eastwest_dev import orders, telemetry

    url = database_url("east_source")
    for day, machines in sorted(days.items()):
        if telemetry.count_day(url, day) != machines * telemetry.MINUTES:
            started = time.monotonic()
            telemetry.load_day(url, day, telemetry.generate_day(day, machines))
            say(f"  loaded {day}: {machines} machines in {time.monotonic() - started:.1f}s")
        orders.write_landing(day, machines, DATA_DIR)


def extract(east: East, runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Extract every run once; remember which files each run's staging holds (its inputs)."""
    from eastwest.east import steps

    found = {}
    for run in runs:
        ctx, plan = east.ctx[run.dag_id], east.plan(run)
        shutil.rmtree(ctx.staging_dir(plan), ignore_errors=True)
        metrics = steps.extract(ctx, plan)
        files = sorted(str(p) for p in ctx.staging_dir(plan).rglob("*") if p.is_file())
        found[plan.run_key] = {"raw_bytes": metrics["raw_bytes"], "bytes": metrics["bytes"], "files": files}
    return found


def restore_staging(east: East, runs: list[Run], extracted: dict[str, dict[str, Any]]) -> None:
    """Remove what an earlier strategy's fetch added to a run's staging (the result and its chunks)."""
    for run in runs:
        ctx, plan = east.ctx[run.dag_id], east.plan(run)
        keep = set(extracted[plan.run_key]["files"])
        for path in ctx.staging_dir(plan).rglob("*"):
            if path.is_file() and str(path) not in keep:
                path.unlink()


# -- the hubs -------------------------------------------------------------------------------------------


@contextmanager
def fds_to(path: Path, fds: tuple[int, ...] = (1, 2)):
    """Send this process's ``fds`` (and so those of every process it starts meanwhile) to ``path``.

    Airflow's structured log writes to stdout, the relays to stderr: both land in the log, and
    the benchmark's progress goes to a copy of the original stdout (:func:`say`).
    """
    global PROGRESS
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    previous, PROGRESS = PROGRESS, os.fdopen(os.dup(saved.get(1, 1)), "w", buffering=1)
    with open(path, "ab") as target:
        for fd in fds:
            os.dup2(target.fileno(), fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        PROGRESS.close()
        PROGRESS = previous


PROGRESS = sys.stdout


def say(text: str) -> None:
    """A line of progress on the terminal (the log goes elsewhere)."""
    print(text, file=PROGRESS, flush=True)


def start_hubs(stack: ExitStack) -> dict[str, Any]:
    """The four emulated hubs, registered as the project's hub connections (AIRFLOW_CONN_<HUB>)."""
    from eastwest.hub.placement import DEFAULT_PROFILES
    from eastwest_dev.wanlab import WanLink

    links = {}
    for hub, spec in LINKS.items():
        link = stack.enter_context(
            WanLink(
                f"pb-{hub.removeprefix('west_')}", index=spec["index"], state_dir=WORK / "hubs",
                west_python=str(WEST_PYTHON), rate_mbit=spec["rate_mbit"], rtt_ms=spec["rtt_ms"],
            )
        )  # fmt: skip
        limits_file = link.hub.root / "limits.json"
        limits = json.loads(limits_file.read_text())
        limits_file.write_text(json.dumps({**limits, "slots": spec["slots"]}, indent=2) + "\n")
        conn = link.connection
        conn["extra"].update(DEFAULT_PROFILES[hub].extras())
        conn["extra"].update(
            {
                "eastwest_slots": spec["slots"],
                "eastwest_link_mb_s": spec["rate_mbit"] / 8,
                "eastwest_link_mbps": spec["rate_mbit"],
                "eastwest_rtt_ms": spec["rtt_ms"],
            }
        )
        os.environ[f"AIRFLOW_CONN_{hub.upper()}"] = json.dumps(conn)
        links[hub] = link
        say(
            f"  {hub}: sshd in netns {link.ns} ({link.west_ip}), {spec['rate_mbit']} Mbit/s, {spec['rtt_ms']} ms RTT, "
            f"{spec['slots']} slot(s), relay 127.0.0.1:{link.relay_port}"
        )
    return links


def reset_hub(link: Any) -> None:
    """Empty the hub's data directories (kept, with their owner); the runner and limits stay."""
    for sub in HUB_DATA_DIRS:
        directory = link.hub.root / sub
        for child in directory.iterdir() if directory.exists() else ():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def seed(east: East, runs: list[Run], placed: dict[date, str]) -> None:
    """Ship the readings of the seeded days to their hubs (only chunks; no run uses them by name)."""
    from eastwest.hub.transfer import TransferEngine
    from eastwest.west import wire

    def ship(hub: str) -> None:
        for day in [d for d, h in placed.items() if h == hub]:
            run = next(r for r in runs if r.day == day and r.dag_id == NIGHTLY)
            ctx, plan = east.ctx[NIGHTLY], east.plan(run)
            manifest = wire.load_dataset_manifest(ctx.manifest_path(plan, "readings"))
            with TransferEngine(hub) as engine:
                engine.push(f"seed-{day:%Y%m%d}", "readings", ctx.store(plan), manifest)

    with ThreadPoolExecutor(max_workers=len(HUBS)) as pool:
        list(pool.map(ship, sorted(set(placed.values()))))


@contextmanager
def unshaped(links: dict[str, Any]):
    """Lift the links' rate limits while setting up (seeding, the history's runs): set-up is not timed."""
    for link in links.values():
        link.shape(10_000)
    try:
        yield
    finally:
        for hub, link in links.items():
            link.shape(LINKS[hub]["rate_mbit"])


def hub_control_cpu(links: dict[str, Any]) -> float:
    """CPU seconds of the hubs' sshd listeners and every session they reaped: the SSH side and the
    runner's commands (probe, have, push, pull, submit, status, …), not the detached jobs."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for link in links.values():
        pid = link.hub.pid()
        if pid is not None:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15]) / tick
    return total


def east_cpu() -> float:
    """CPU seconds of this process, every thread (placement, SSH, transfers, hashing) and waited-for child."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def reset_east() -> None:
    for sub in ("reports", "placements", "hubs", "transfers"):
        shutil.rmtree(DATA_DIR / sub, ignore_errors=True)


# -- one run, as the DAG's hub-side steps do it --------------------------------------------------------


#: The embedded SQLite warehouse is shared by the worker threads: its reads (placement's rates) and
#: writes (each run's compute_usage row) take turns, as they would not need to on PostgreSQL.
WAREHOUSE = threading.Lock()


def serialise_warehouse_reads() -> None:
    """Make placement read the job's measured rates under :data:`WAREHOUSE` (a locked SQLite file
    would otherwise make it fall back to default rates, with a warning)."""
    from eastwest.east import placing

    unlocked = placing.rates

    def rates(ctx: Any) -> Any:
        with WAREHOUSE:
            return unlocked(ctx)

    placing.rates = rates


class Day:
    """Runs one strategy's day and collects what each run did."""

    def __init__(self, east: East, strategy: Strategy, raw_bytes: dict[str, int]) -> None:
        self.east, self.strategy, self.raw_bytes = east, strategy, raw_bytes
        self.warehouse = WAREHOUSE

    def run(self, run: Run) -> dict[str, Any]:
        from eastwest.east import placing, report, steps
        from eastwest.hub import jobs

        s = self.strategy
        ctx = self.east.ctx[run.dag_id]
        plan = self.east.plan(run, hub=s.hub_for(run), policy=s.policy or "fastest", deadline_s=s.deadline_s)
        out: dict[str, Any] = {"n": run.n, "run": run.label, "requested": plan.hub, "started": time.time()}
        try:
            placed = placing.place(ctx, plan)  # placements run at once, as the DAGs' place tasks do
            out["place_s"] = placed["seconds"]
            decision = (placing.load(ctx, plan) or {})["decisions"][0]
            chosen = next(c for c in decision["candidates"] if c["hub"] == decision["hub"])
            out["estimate_s"] = chosen["time_s"]
            out["estimates"] = {c["hub"]: c["time_s"] for c in decision["candidates"] if not c["excluded"]}
            out["reason"] = placed["reason"]
            out["t_place"] = time.time() - out["started"]
            shipped = steps.ship(ctx, plan)
            out["shipped_bytes"] = shipped["wire_bytes"]
            out["t_ship"] = time.time() - out["started"]
            with placing.on_hub(ctx, plan, placing.COMPUTE) as hub:  # as WestJobOperator.execute does
                record = placing.load(ctx, plan) or {}
                bundle = record.get("shipped", {}).get(hub) or steps.ship_to(ctx, plan, hub)["bundle"]
                jobs.submit(hub, plan.run_key, plan.job, bundle, dict(plan.params))
                placing.release(ctx, plan)
                event = jobs.watch(
                    jobs.JobWatch(hub, plan.run_key, plan.job), deadline=None, poll_interval=POLL_INTERVAL,
                    lost_after=120.0, emit=log.debug,
                )  # fmt: skip
                if event["status"] != "succeeded":
                    raise RuntimeError(f"job {plan.job} on {hub}: {event}")
                placing.mark(ctx, plan, "computed", hub, True)
            out["t_compute"] = time.time() - out["started"]
            fetched = steps.fetch(ctx, plan)
            out["ended"] = time.time()
            summary = {
                "job_seconds": fetched["job_seconds"],
                "core_seconds": fetched["core_seconds"],
                "raw_bytes": self.raw_bytes[plan.run_key],
                "rows_published": fetched["rows"],
            }
            with self.warehouse:
                report.record_usage(ctx, plan, summary, run_id=f"{s.name}#{run.n}")
            used = placing.usage(
                ctx, plan, compute_seconds=float(fetched["job_seconds"] or 0),
                core_seconds=float(fetched["core_seconds"] or 0),
            )  # fmt: skip
            out.update(
                hub=used["hub"], failovers=used["failovers"], cost_yuan=used["cost_yuan"], bytes_in=used["bytes_in"],
                core_seconds=used["core_seconds"], job_seconds=fetched["job_seconds"],
                queued_seconds=fetched["queued_seconds"],
            )  # fmt: skip
        except Exception as exc:  # a failed run is reported, the day goes on
            log.exception("run %s of %s failed", run.label, s.name)
            out.update(ended=time.time(), error=f"{type(exc).__name__}: {str(exc)[:300]}")
        out["seconds"] = round(out["ended"] - out["started"], 3)
        return out


def run_strategy(east: East, strategy: Strategy, runs: list[Run], concurrency: int, setup: dict[str, Any]) -> dict:
    """Reset everything to the day's starting state, then run the day with ``concurrency`` workers."""
    for link in setup["links"].values():
        reset_hub(link)
    reset_east()
    restore_staging(east, runs, setup["extracted"])
    shutil.copy(setup["history"], DATA_DIR / "warehouse.db")
    with unshaped(setup["links"]):
        seed(east, runs, setup["seeds"])
    day = Day(east, strategy, {k: v["raw_bytes"] for k, v in setup["extracted"].items()})
    links = setup["links"]
    before = cpu_snapshot(links)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(day.run, runs))
    wall = time.monotonic() - started
    used = {key: value - before[key] for key, value in cpu_snapshot(links).items()}
    row = summarize(strategy, results, wall)
    # What the machine did besides this day: its busy time less the east (this process), the hubs'
    # sshd and runner commands, the relays and the jobs (their core-seconds, measured on the hubs).
    # The jobs' supervisors and the kernel's network work count as other load: a few CPU seconds.
    ours = used["east"] + used["hubs"] + used["relays"] + row["core_seconds"]
    return {
        **row,
        "east_cpu_s": round(used["east"], 1),
        "hub_control_cpu_s": round(used["hubs"], 1),
        "relay_cpu_s": round(used["relays"], 1),
        "machine_busy_s": round(used["busy"], 1),
        "other_cpu_s": round(max(0.0, used["busy"] - ours), 1),
    }


def wait_quiet(threshold: float, max_wait: float) -> float:
    """Wait (at most ``max_wait`` seconds) until the machine's other processes use less than
    ``threshold`` of a core over 5 s (nothing of this benchmark runs meanwhile); return the seconds waited."""
    started = time.monotonic()
    told = False
    while True:
        before = machine_busy()
        time.sleep(5)
        cores = (machine_busy() - before) / 5
        waited = time.monotonic() - started
        if cores < threshold or waited >= max_wait:
            return round(waited, 1)
        if not told:
            say(f"  (other processes use {cores:.1f} cores: waiting up to {max_wait:.0f} s for them to finish)")
            told = True


def run_quietly(east: East, strategy: Strategy, runs: list[Run], args: argparse.Namespace, setup: dict) -> dict:
    """Run the strategy once the machine is quiet (``--wait-quiet``); while other processes took more
    than ``--noisy`` of a core on average meanwhile, run it again (at most ``--retries`` times) and keep
    the attempt with the least other load."""
    attempts = []
    while True:
        waited = wait_quiet(args.noisy, args.wait_quiet)
        row = {**run_strategy(east, strategy, runs, args.concurrency, setup), "waited_s": waited}
        attempts.append(row)
        noisy = row["other_cpu_s"] / max(row["wall_s"], 1e-9) > args.noisy
        if not noisy or len(attempts) > args.retries:
            break
        say(
            f"  {strategy.name:30} (makespan {row['makespan_s']:.1f}s, but other processes used {row['other_cpu_s']} "
            f"CPU s in {row['wall_s']:.0f} s: running it again)"
        )
    best = min(attempts, key=lambda r: r["other_cpu_s"])
    return {**best, "attempts": len(attempts), "discarded": [a for a in attempts if a is not best]}


def summarize(strategy: Strategy, results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    ok = [r for r in results if "error" not in r]
    first = min(r["started"] for r in results)
    last = max(r["ended"] for r in results)
    used = Counter(r["hub"] for r in ok)
    return {
        "strategy": strategy.name,
        "fixed": strategy.fixed,
        "policy": strategy.policy,
        "deadline_s": strategy.deadline_s,
        "makespan_s": round(last - first, 2),
        "wall_s": round(wall, 2),
        "cost_yuan": round(sum(r["cost_yuan"] for r in ok), 6),
        "mean_run_s": round(statistics.mean(r["seconds"] for r in ok), 2) if ok else None,
        "shipped_mb": round(sum(r["bytes_in"] for r in ok) / 1e6, 2),
        "core_seconds": round(sum(r["core_seconds"] for r in ok), 1),
        "queued_s": round(sum(r["queued_seconds"] or 0 for r in ok), 1),
        "hubs_used": {h: used[h] for h in HUBS if used[h]},
        "placement_ms_median": round(1000 * statistics.median(r["place_s"] for r in results if "place_s" in r), 0),
        "failed": len(results) - len(ok),
        "estimate_ratio_median": round(statistics.median(r["seconds"] / r["estimate_s"] for r in ok), 2)
        if ok
        else None,
        "runs": results,
    }


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every core; /proc/stat: user, nice, system, irq, softirq)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def relays_cpu(links: dict[str, Any]) -> float:
    """CPU seconds of the links' delay relays (this process's children, alive until the end)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for link in links.values():
        relay = getattr(link, "_relay", None)
        try:
            fields = Path(f"/proc/{relay.pid}/stat").read_text().rsplit(")", 1)[1].split() if relay else []
        except FileNotFoundError:
            continue
        total += sum(int(v) for v in fields[11:13]) / tick
    return total


def cpu_snapshot(links: dict[str, Any]) -> dict[str, float]:
    return {
        "busy": machine_busy(), "east": east_cpu(), "hubs": hub_control_cpu(links), "relays": relays_cpu(links),
    }  # fmt: skip


# -- history: one run of each job on each hub ----------------------------------------------------------


def calibrate(east: East, setup: dict[str, Any]) -> Path:
    """Run each job once on each hub (the hubs in parallel) and keep the warehouse that records them,
    so that every strategy's placements start from the same measured history."""
    per_hub = {
        hub: [
            Run(n, dag, CALIBRATION_DAY, CALIBRATION_MACHINES, scope=f"calibration-{hub.removeprefix('west_')}")
            for n, dag in enumerate((NIGHTLY, ORDERS))
        ]
        for hub in HUBS
    }
    (DATA_DIR / "warehouse.db").unlink(missing_ok=True)
    reset_east()
    extracted = extract(east, [run for runs in per_hub.values() for run in runs])
    raw = {key: value["raw_bytes"] for key, value in extracted.items()}

    def on(hub: str) -> list[dict[str, Any]]:
        day = Day(east, Strategy(f"calibration {hub}", hub=hub), raw)
        return [day.run(run) for run in per_hub[hub]]

    with unshaped(setup["links"]), ThreadPoolExecutor(max_workers=len(HUBS)) as pool:
        done = [r for runs in pool.map(on, HUBS) for r in runs]
    failed = [r for r in done if "error" in r]
    if failed:
        raise SystemExit(f"calibration failed: {failed[0]['error']} (log: {WORK / 'bench.log'})")
    history = WORK / "history.db"
    shutil.copy(DATA_DIR / "warehouse.db", history)
    setup["calibration"] = [
        {k: r[k] for k in ("run", "hub", "seconds", "job_seconds", "core_seconds", "queued_seconds")} for r in done
    ]
    return history


# -- report ---------------------------------------------------------------------------------------------


def with_regret(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fixed = [r for r in rows if r["fixed"] and not r["failed"]]
    best = min(fixed, key=lambda r: r["makespan_s"]) if fixed else None
    cheapest = min(fixed, key=lambda r: r["cost_yuan"]) if fixed else None
    for row in rows:
        row["makespan_ratio"] = round(row["makespan_s"] / best["makespan_s"], 2) if best else None
        row["cost_ratio"] = round(row["cost_yuan"] / cheapest["cost_yuan"], 2) if cheapest else None
        row["best_fixed"] = best["strategy"] if best else None
        row["cheapest_fixed"] = cheapest["strategy"] if cheapest else None
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| strategy | makespan s | × best fixed hub | total cost ¥ | × cheapest fixed hub | mean run s "
        "| MB shipped | hubs used (runs) | placement ms (median) | other load CPU s | failed |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        hubs = ", ".join(f"{h.removeprefix('west_')} {n}" for h, n in r["hubs_used"].items())
        lines.append(
            f"| {r['strategy']} | {r['makespan_s']:.1f} | {r['makespan_ratio']:.2f}× | {r['cost_yuan']:.5f} | "
            f"{r['cost_ratio']:.2f}× | {r['mean_run_s']:.1f} | {r['shipped_mb']:.1f} | {hubs} | "
            f"{r['placement_ms_median']:.0f} | {r['other_cpu_s']:.0f} | {r['failed']} |"
        )
    return "\n".join(lines)


def cpu_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| strategy | east CPU s | hubs' SSH + runner CPU s | jobs' core-s | queued in hub slots s | estimate ÷ actual run time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = 1 / r["estimate_ratio_median"] if r.get("estimate_ratio_median") else float("nan")
        lines.append(
            f"| {r['strategy']} | {r['east_cpu_s']:.0f} | {r['hub_control_cpu_s']:.0f} | {r['core_seconds']:.0f} | "
            f"{r['queued_s']:.0f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def print_report(results: dict[str, Any]) -> None:
    rows = results["strategies"]
    print(table(rows))
    best, cheapest = rows[0]["best_fixed"], rows[0]["cheapest_fixed"]
    print(f"\nbest fixed hub in hindsight: {best} (makespan); {cheapest} (cost)\n")
    print(cpu_table(rows))


def combine(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One strategy's row over its rounds: medians, the hubs used in all rounds, each round kept."""
    if len(rows) == 1:
        return {**rows[0], "rounds": 1}
    out = {k: rows[0][k] for k in ("strategy", "fixed", "policy", "deadline_s")}
    for key in MEDIANS:
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = round(statistics.median(values), 6) if values else None
    out["failed"] = sum(r["failed"] for r in rows)
    hubs: Counter[str] = Counter()
    for r in rows:
        hubs.update(r["hubs_used"])
    out["hubs_used"] = {h: hubs[h] for h in HUBS if hubs[h]}
    return {**out, "rounds": len(rows), "each_round": rows}


MEDIANS = (
    "makespan_s", "wall_s", "cost_yuan", "mean_run_s", "shipped_mb", "core_seconds", "queued_s",
    "placement_ms_median", "estimate_ratio_median", "east_cpu_s", "hub_control_cpu_s", "other_cpu_s",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"a smaller day ({len(day_runs(True))} runs)")
    parser.add_argument("--concurrency", type=int, default=4, help="runs in flight at once (default 4)")
    parser.add_argument("--deadline-s", type=int, default=6, help="the third auto policy's deadline (default 6)")
    parser.add_argument("--rounds", type=int, default=1, help="run every strategy this many times (medians)")
    parser.add_argument(
        "--noisy", type=float, default=0.25,
        help="run a strategy again when other processes used more than this many cores meanwhile (default 0.25)",
    )  # fmt: skip
    parser.add_argument("--retries", type=int, default=1, help="how often a noisy strategy runs again (default 1)")
    parser.add_argument(
        "--wait-quiet", type=float, default=120,
        help="before each strategy, wait up to this many seconds for other processes to use less than --noisy",
    )  # fmt: skip
    parser.add_argument("--only", default="", help="comma-separated strategy names to run (default: all)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true", help="print the table from --results")
    parser.add_argument("--verbose", action="store_true", help=f"the log on stderr (default: {WORK / 'bench.log'})")
    args = parser.parse_args(argv)
    if args.report_only:
        print_report(json.loads(args.results.read_text()))
        return 0
    if os.geteuid() != 0:
        print("error: the benchmark emulates WAN links with network namespaces and tc; run it as root", file=sys.stderr)
        return 1
    if not WEST_PYTHON.exists():
        print(f"error: {WEST_PYTHON} is missing; run `make west-venv` first", file=sys.stderr)
        return 1
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        EASTWEST_DATA_DIR=str(DATA_DIR), EASTWEST_PROJECT_DIR=str(ROOT), EASTWEST_HUBS=",".join(HUBS),
        EASTWEST_DEFAULT_HUB="auto",
    )  # fmt: skip
    for name in ("AIRFLOW_CONN_EAST_SOURCE", "AIRFLOW_CONN_EAST_WAREHOUSE"):
        os.environ.pop(name, None)  # the embedded SQLite databases under the bench's own data dir
    command = " ".join([".venv/bin/python bench/placement_bench.py", *(sys.argv[1:] if argv is None else argv)])
    with ExitStack() as quiet:
        if not args.verbose:  # the project's log, the relays' and any traceback of a hub-side step
            (WORK / "bench.log").unlink(missing_ok=True)
            quiet.enter_context(fds_to(WORK / "bench.log"))
        results = bench(args, command)
    print()
    print_report(results)
    print(f"\nresults: {args.results}  ({results['seconds']:.0f} s in all; log: {WORK / 'bench.log'})")
    return 0


def bench(args: argparse.Namespace, command: str) -> dict[str, Any]:
    import eastwest.east.report  # noqa: F401  (imported before the logging set-up and the clock)
    from eastwest.east import placing, steps  # noqa: F401
    from eastwest.hub import hook, jobs, transfer  # noqa: F401

    logging.basicConfig(  # after Airflow's imports, which configure logging their own way
        level=logging.INFO,
        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    serialise_warehouse_reads()
    started = time.monotonic()
    runs = day_runs(args.quick)
    chosen = strategies(args.deadline_s)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        chosen = [s for s in chosen if s.name in wanted]
    east = East()
    say(f"east: {len(runs)} runs; loading the source and extracting (not timed) …")
    load_source({r.day: r.machines for r in runs} | {CALIBRATION_DAY: CALIBRATION_MACHINES})
    setup: dict[str, Any] = {"seeds": seeds(runs)}
    setup["extracted"] = extract(east, runs)
    say(f"  done at {time.monotonic() - started:.0f}s")
    per: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        say("hubs:")
        setup["links"] = start_hubs(stack)
        say("history: each job once on each hub …")
        setup["history"] = calibrate(east, setup)
        say(f"  done at {time.monotonic() - started:.0f}s; the strategies, in this order:")
        for position, strategy in enumerate(run_order(chosen, args.rounds)):
            row = run_quietly(east, strategy, runs, args, setup)
            per.setdefault(strategy.name, []).append({**row, "position": position})
            say(
                f"  {strategy.name:30} makespan {row['makespan_s']:6.1f}s  cost ¥{row['cost_yuan']:.5f}  "
                f"mean run {row['mean_run_s']}s  other load {row['other_cpu_s']} CPU s  hubs {row['hubs_used']}  "
                f"failed {row['failed']}"
            )
    rows = with_regret([combine(per[s.name]) for s in chosen])
    results = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.monotonic() - started, 1),
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "links": LINKS,
        "prices": {h: _prices(h) for h in HUBS},
        "runs": [
            {
                "n": r.n,
                "run": r.label,
                "raw_mb": round(setup["extracted"][east.plan(r).run_key]["raw_bytes"] / 1e6, 1),
                "zstd_mb": round(setup["extracted"][east.plan(r).run_key]["bytes"] / 1e6, 2),
                "seeded_on": setup["seeds"].get(r.day),
            }
            for r in runs
        ],
        "calibration": setup.get("calibration"),
        "strategies": rows,
    }
    args.results.write_text(json.dumps(results, indent=1, default=str))
    return results


def _prices(hub: str) -> dict[str, float]:
    from eastwest.hub.placement import DEFAULT_PROFILES

    p = DEFAULT_PROFILES[hub]
    return {"price_core_hour": p.price_core_hour, "price_gb_in": p.price_gb_in}


if __name__ == "__main__":
    sys.exit(main())
