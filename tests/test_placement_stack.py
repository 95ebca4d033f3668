"""Placement, failover and per-hub pools under the real Airflow scheduler, with real sshd hubs.

The session's stack (``conftest.local_stack``) runs ``tests/dags/test_failover.py`` (the analyst
workload, quick retries, a six-second failover). Every hub declares one compute slot, so each hub's
pool has one slot, while the hubs themselves would run four jobs at once: only the pools keep one
job per hub. ``STACK_FAVOURITE`` declares a very fast link, so placement prefers it, but its real
transfers are capped at 0.5 Mbit/s, so a ship to it lasts long enough to be cut.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import signal
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import psutil
import pytest

from conftest import HUB_PORT_BASE, TEST_HOME, WEST_PYTHON
from conftest import STACK_FAVOURITE as FAVOURITE
from eastwest.east import warehouse
from eastwest.settings import DEFAULT_HUBS, pool_name
from eastwest_dev import localhubs, telemetry
from eastwest_dev.stack import Stack

pytestmark = pytest.mark.integration

DAG_ID = "test_failover"
MACHINES = 8
BIG = 60  # machines of the day whose ship is cut: about 0.5 MB, eight seconds at 0.5 Mbit/s
FIRST_DAY = date(2026, 11, 10)
RUNS_AT_ONCE = 5  # on the four hubs: at least one hub gets two
KPIS_KEYS = ("day", "enterprise_id", "machine_id")


def hub_root(hub: str) -> Path:
    return TEST_HOME / "hubs" / hub / "root"


@pytest.fixture(scope="module")
def east(stack_east, pg_url) -> dict[str, str]:
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:  # earlier modules' runs: placement here starts from no history
        conn.execute(sa.text("DROP TABLE IF EXISTS compute_usage"))
    engine.dispose()
    for path in (Path(stack_east["EASTWEST_DATA_DIR"]) / "hubs" / "rates").glob("*.json"):
        path.unlink()
    telemetry.load_day(pg_url, FIRST_DAY, telemetry.generate_day(FIRST_DAY, BIG))  # for the cut ship
    for offset in range(1, 2 + RUNS_AT_ONCE):
        day = FIRST_DAY + timedelta(days=offset)
        telemetry.load_day(pg_url, day, telemetry.generate_day(day, MACHINES))
    return {**stack_east, "PG_URL": pg_url}


@pytest.fixture(scope="module")
def stack(local_stack):
    return local_stack


def conf(day: date, ids: str = "E0001") -> dict:
    return {"start_date": day.isoformat(), "end_date": None, "hub": "auto", "policy": "fastest", "enterprise_ids": ids}


def task_states(stack: Stack, run_id: str) -> dict[str, dict]:
    found = stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")
    return {t["task_id"]: t for t in found["task_instances"]}


def wait_for_task(stack: Stack, run_id: str, task_id: str, states: tuple[str, ...], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if task_states(stack, run_id).get(task_id, {}).get("state") in states:
            return
        time.sleep(0.2)
    raise AssertionError(f"{task_id} of {run_id} never reached {states}: {task_states(stack, run_id)}")


def report_of(east: dict, run_key_prefix: str) -> dict:
    reports = Path(east["EASTWEST_DATA_DIR"]) / "reports"
    found = [p for p in reports.glob(f"{run_key_prefix}*/report.json")]
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def run_key(east: dict, run_id: str, stack: Stack) -> str:
    plan = stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/plan/xcomEntries/return_value")
    value = plan["value"]
    return (value if isinstance(value, dict) else json.loads(value))["run_key"]


def kill_hub(hub: str) -> None:
    """Stop the hub's sshd and every session it serves, as if the machine dropped off the network."""
    pid = int((TEST_HOME / "hubs" / hub / "sshd.pid").read_text())
    master = psutil.Process(pid)
    for proc in [*master.children(recursive=True), master]:
        try:
            if proc.cmdline() and "jobctl" in " ".join(proc.cmdline()) and "supervise" in proc.cmdline():
                continue  # a detached job is not part of the link
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    master.wait(10)
    (TEST_HOME / "hubs" / hub / "sshd.pid").unlink(missing_ok=True)


@pytest.fixture
def revive():
    yield
    localhubs.up(TEST_HOME / "hubs", HUB_PORT_BASE, str(WEST_PYTHON))


def fresh_probes(east: dict) -> None:
    for path in (Path(east["EASTWEST_DATA_DIR"]) / "hubs" / "health").glob("*.json"):
        path.unlink()


def published(east: dict, day: date, scope_run_key: str) -> list[dict]:
    from eastwest import Target

    scope = scope_run_key.split(".")[1]
    target = Target("daily_kpis", keys=KPIS_KEYS, partition_column="day")
    return warehouse.partition_rows(east["PG_URL"], target, warehouse.Partition(scope, day, day + timedelta(days=1)))


def usage_of(east: dict, run_id: str) -> dict:
    rows = [r for r in warehouse.usage_rows(east["PG_URL"], DAG_ID) if r["run_id"] == run_id]
    assert len(rows) == 1, rows
    return rows[0]


def check_one_publish(stack: Stack, east: dict, run_id: str, day: date, key: str, machines: int = 1) -> None:
    """The run published once, each machine's row once (of 8 machines, one is each enterprise's)."""
    states = task_states(stack, run_id)
    assert states["publish"]["state"] == "success" and states["publish"]["try_number"] == 1
    rows = published(east, day, key)
    assert sorted(r["machine_id"] for r in rows) == sorted({r["machine_id"] for r in rows}) and len(rows) == machines


def test_a_hub_cut_in_the_middle_of_ship_fails_over_and_publishes_once(stack, east, revive) -> None:
    fresh_probes(east)
    day = FIRST_DAY
    run_id = stack.trigger(DAG_ID, conf(day, ids=""))  # every machine
    wait_for_task(stack, run_id, "ship", ("running",))
    receiving = hub_root(FAVOURITE) / "chunks"
    deadline = time.monotonic() + 120
    while not any(receiving.rglob(".*.partial")):  # a chunk is arriving: cut the link now
        assert time.monotonic() < deadline, "the ship to the favourite hub never started"
        time.sleep(0.05)
    kill_hub(FAVOURITE)
    assert stack.wait_for_run(DAG_ID, run_id) == "success"
    key = run_key(east, run_id, stack)
    summary = report_of(east, key)
    assert summary["hub"] != FAVOURITE
    assert summary["failovers"][0].startswith(f"{FAVOURITE} failed during ship at ")
    assert f"the run went to {summary['hub']}" in summary["failovers"][0]
    assert (
        "[ship]" in summary["placement_table"]
        and f"{FAVOURITE:<16} excluded: failed during ship" in (summary["placement_table"])
    )
    check_one_publish(stack, east, run_id, day, key, machines=BIG)
    assert {r["hub"] for r in published(east, day, key)} == {summary["hub"]}
    used = usage_of(east, run_id)
    assert used["hub"] == summary["hub"] and used["failovers"] == 1
    assert used["hubs_tried"] == f"{FAVOURITE},{summary['hub']}"
    assert used["core_seconds"] > 0 and used["bytes_in"] > 0 and used["cost_yuan"] > 0


@contextmanager
def slots_held(hub: str):
    """Hold every compute slot of ``hub``: a job submitted there waits in its queue."""
    slots = json.loads((hub_root(hub) / "limits.json").read_text())["slots"]
    files = []
    try:
        for n in range(slots):
            path = hub_root(hub) / "scratch" / ".slots" / f"{n}.lock"
            path.parent.mkdir(exist_ok=True)
            f = open(path, "a")
            for made in (path.parent, path):  # the hub user must still open them
                shutil.chown(made, user=localhubs.hub_user())
            fcntl.flock(f, fcntl.LOCK_EX)
            files.append(f)
        yield
    finally:
        for f in files:
            f.close()


def test_a_hub_lost_while_its_job_runs_fails_over_and_publishes_once(stack, east, revive) -> None:
    fresh_probes(east)
    day = FIRST_DAY + timedelta(days=1)
    with slots_held(FAVOURITE):
        run_id = stack.trigger(DAG_ID, conf(day))
        wait_for_task(stack, run_id, f"compute_{FAVOURITE}", ("deferred",))
        kill_hub(FAVOURITE)
        assert stack.wait_for_run(DAG_ID, run_id, timeout=300) == "success"
    key = run_key(east, run_id, stack)
    summary = report_of(east, key)
    assert summary["hub"] != FAVOURITE
    assert summary["failovers"][0].startswith(f"{FAVOURITE} failed during compute at ")
    check_one_publish(stack, east, run_id, day, key)
    states = task_states(stack, run_id)
    assert states[f"compute_{FAVOURITE}"]["try_number"] == 2  # the retry moved the run
    assert all(states[f"compute_{h}"]["state"] == "skipped" for h in DEFAULT_HUBS if h != FAVOURITE)
    assert usage_of(east, run_id)["failovers"] == 1


def test_five_runs_at_once_on_four_hubs_never_put_two_jobs_on_one_hub(stack, east) -> None:
    """More runs than hubs: some hub runs two of them, one after the other, never both at once."""
    fresh_probes(east)
    pools = {p["name"]: p["slots"] for p in stack.request("GET", "/api/v2/pools")["pools"]}
    assert all(pools[pool_name(hub)] == 1 for hub in DEFAULT_HUBS)
    days = [FIRST_DAY + timedelta(days=2 + i) for i in range(RUNS_AT_ONCE)]
    runs = [stack.trigger(DAG_ID, conf(day, ids="E0002")) for day in days]
    assert [stack.wait_for_run(DAG_ID, run_id, timeout=900) for run_id in runs] == ["success"] * RUNS_AT_ONCE
    keys = {run_key(east, run_id, stack) for run_id in runs}
    hubs_used, most_on_one_hub = set(), 0
    for hub in DEFAULT_HUBS:  # on each hub, from its own log: when each of these runs' jobs held a slot
        spans: dict[str, list[float]] = {}
        log = hub_root(hub) / "log" / "slots.log"
        for line in log.read_text().splitlines() if log.exists() else []:
            event = json.loads(line)
            if event["run"] in keys:
                spans.setdefault(event["run"], []).append(event["at"])
        ordered = sorted(spans.values())
        assert all(len(s) == 2 for s in ordered), spans
        assert all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:], strict=False)), f"{hub}: {ordered}"
        hubs_used |= {hub} if ordered else set()
        most_on_one_hub = max(most_on_one_hub, len(ordered))
    assert len(hubs_used) >= 2, hubs_used  # placement spread the queue
    assert most_on_one_hub >= 2  # so the check above did compare two jobs on one hub
    for run_id, day in zip(runs, days, strict=True):
        key = run_key(east, run_id, stack)
        check_one_publish(stack, east, run_id, day, key)
