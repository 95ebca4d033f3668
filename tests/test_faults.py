"""Faults the pipeline survives, each made real: a killed triggerer, a killed worker, a full disk, a damaged chunk.

Every fault is the real thing, not a mock: processes are killed with SIGKILL, the hub's chunk store
is a small tmpfs that fills up, bytes are flipped in a file on the hub, a PostgreSQL backend loses
its client in the middle of a transaction. ``docs/reliability.md`` lists these rows with the
others the test suite proves.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import PG_TEST_DB, ROOT, TEST_HOME, fresh_pg_database
from eastwest.hub.hook import HubError, WestHubHook
from eastwest.hub.transfer import TransferEngine
from eastwest.west import wire
from eastwest_dev import telemetry
from test_hub_jobs import SLEEPY, TI, Store

pytestmark = pytest.mark.integration

PYTHON = str(Path(sys.executable))


def hub_root(hub: str) -> Path:
    return TEST_HOME / "hubs" / hub / "root"


def readings(
    tmp_path: Path, day: date, machines: int, target: int = 512 << 10
) -> tuple[wire.ChunkStore, wire.DatasetManifest]:
    """A day of telemetry as chunks in an east-side store (each test its own day: new to the hub)."""
    table = pa.Table.from_batches(list(telemetry.generate_day(day, machines)))
    store = wire.ChunkStore(tmp_path / f"east-{day:%Y%m%d}")
    return store, wire.write_chunks(table.to_batches(max_chunksize=10_000), telemetry.schema(), store, target)


@pytest.fixture(scope="module")
def fault_bundle(hubs, tmp_path_factory) -> str:
    """The project's jobs plus ``sleepy``, shipped and installed on west_guizhou; its digest."""
    jobs_dir = tmp_path_factory.mktemp("jobs") / "jobs"
    files = {p.name: p.read_text() for p in (ROOT / "include" / "jobs").glob("*.py")}
    jobs_dir.mkdir()
    for name, text in {**files, "sleepy.py": SLEEPY}.items():
        (jobs_dir / name).write_text(text)
    return TransferEngine("west_guizhou").push_bundle(
        "faults-bundle", jobs_dir, wire.ChunkStore(jobs_dir.parent / "east")
    )


# -- 1. the triggerer killed while a job is deferred ----------------------------------------------

#: A stand-in triggerer: rebuild the trigger from its serialized form, run it to its first event.
TRIGGERER = """
import asyncio, json, sys
from airflow.sdk.module_loading import import_string

classpath, kwargs = sys.argv[1], json.loads(sys.argv[2])
trigger = import_string(classpath)(**kwargs)

async def first_event():
    async for event in trigger.run():
        return event.payload

print("EVENT " + json.dumps(asyncio.run(first_event())), flush=True)
"""


class StandInTriggerer:
    """A ``python -c`` process running one trigger; its stdout (the trigger's log) is collected."""

    def __init__(self, classpath: str, kwargs: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [PYTHON, "-c", TRIGGERER, classpath, json.dumps(kwargs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared in the stand-in triggerer's output:\n" + "\n".join(self.lines))

    def event(self, timeout: float) -> dict[str, Any]:
        self.proc.wait(timeout)
        self._reader.join(5)
        events = [line.removeprefix("EVENT ") for line in self.lines if line.startswith("EVENT ")]
        assert self.proc.returncode == 0 and len(events) == 1, "\n".join(self.lines)
        return json.loads(events[0])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def test_a_triggerer_killed_mid_watch_is_replaced_and_the_job_runs_once(fault_bundle, tmp_path) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from eastwest.airflow.operators import WestJobOperator

    hub, run = "west_guizhou", f"faults-triggerer-{time.monotonic_ns()}"
    store, manifest = readings(tmp_path, date(2026, 9, 1), machines=2)
    TransferEngine(hub).push(run, "readings", store, manifest)
    plan = {"hub": hub, "job": "sleepy", "run_key": run, "params": {"seconds": 14, "marker": run}}
    op = WestJobOperator(task_id="compute", plan=plan, poll_interval=0.5, lost_after=120)
    with pytest.raises(TaskDeferred) as deferred:  # submits the job, then defers to the triggerer
        op.execute({"ti": TI(fault_bundle), "task_state_store": Store()})
    classpath, kwargs = deferred.value.trigger.serialize()
    kwargs = json.loads(json.dumps(kwargs))  # what the triggerer gets back from the metadata DB

    first = StandInTriggerer(classpath, kwargs)
    try:
        first.wait_for(f"[{hub}] sleepy started {run}", timeout=30)  # it is watching: the job's output streams
        job_before = WestHubHook(hub).job_status(run, "sleepy")
    finally:
        first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    assert not any(line.startswith("EVENT ") for line in first.lines)
    assert job_before["state"] == "running", job_before

    second = StandInTriggerer(classpath, kwargs)  # the triggerer restarts the trigger from the same row
    try:
        event = second.event(timeout=45)
    finally:
        second.kill()
    assert event["status"] == "succeeded" and event["exit_code"] == 0, event
    assert (event["hub"], event["run_key"], event["job"]) == (hub, run, "sleepy")
    assert any("sleepy second 13" in line for line in second.lines)  # it watched to the job's end
    status = WestHubHook(hub).job_status(run, "sleepy")
    assert status["state"] == "succeeded"
    log = WestHubHook(hub).job_log(run, "sleepy").decode()
    assert log.count("sleepy started") == 1, log  # one job, started once, never resubmitted
    assert op.execute_complete({}, event) == {"hub": hub, "job": "sleepy", "state": "succeeded"}


# -- 2. the worker killed during publish ------------------------------------------------------------

#: A stand-in worker: publish the table in FILE to the partition of DAY, as the publish task does.
PUBLISHER = """
import sys
from datetime import date, timedelta
import pyarrow as pa
from eastwest import Target
from eastwest.east import warehouse

url, path, day = sys.argv[1], sys.argv[2], date.fromisoformat(sys.argv[3])
table = pa.ipc.open_file(path).read_all()
target = Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day")
print(warehouse.publish(url, target, warehouse.Partition("nightly", day, day + timedelta(days=1)), table, "west_guizhou"))
"""


def kpi_rows(day: date, machines: int, energy: float) -> pa.Table:
    import pyarrow.compute as pc

    ids = pa.array(range(machines), pa.int64())
    return pa.table(
        {
            "day": pa.array([day] * machines, pa.date32()),
            "enterprise_id": pc.binary_join_element_wise("E", pc.cast(pc.divide(ids, 10), pa.string()), ""),
            "machine_id": pc.binary_join_element_wise("M", pc.cast(ids, pa.string()), ""),
            "readings": pa.array([1440] * machines, pa.int64()),
            "energy_kwh": pa.array([energy] * machines, pa.float64()),
            "anomaly_count": pa.array([0] * machines, pa.int64()),
        }
    )


def backend_of(url: str, app: str) -> dict[str, Any] | None:
    """The PostgreSQL backend serving ``application_name`` ``app``, if any."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT pid, state, backend_xid::text AS xid, xact_start FROM pg_stat_activity "
                    "WHERE application_name = :app"
                ),
                {"app": app},
            ).first()
    finally:
        engine.dispose()
    return dict(row._mapping) if row is not None else None


def test_a_worker_killed_in_the_middle_of_publish_leaves_the_previous_rows(tmp_path) -> None:
    from eastwest import Target
    from eastwest.east import arrowdb, warehouse

    day = date(2026, 11, 24)
    target = Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day")
    partition = warehouse.Partition("nightly", day, date(2026, 11, 25))
    big = 1_500_000
    with fresh_pg_database(f"{PG_TEST_DB}_publish") as url:
        first = warehouse.publish(url, target, partition, kpi_rows(day, 5, energy=1.0), "west_guizhou")
        assert first.rows_after == 5
        replacement = tmp_path / "replacement.arrow"
        with pa.OSFile(str(replacement), "wb") as sink, pa.ipc.new_file(sink, kpi_rows(day, 1, 2.0).schema) as out:
            out.write_table(kpi_rows(day, big, energy=2.0))

        app = f"eastwest-faults-{os.getpid()}"
        worker = subprocess.Popen(
            [PYTHON, "-c", PUBLISHER, url, str(replacement), day.isoformat()],
            env={**os.environ, "PGAPPNAME": app},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 45
            seen = None
            while time.monotonic() < deadline and worker.poll() is None:
                seen = backend_of(url, app)
                if seen and seen["xid"] is not None:  # the transaction has written: the old rows are deleted
                    break
                time.sleep(0.02)
            assert seen and seen["xid"] is not None, f"never saw the publish transaction write: {seen}"
            worker.send_signal(signal.SIGKILL)  # the worker dies with its transaction open
            worker.wait(10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
        assert worker.returncode == -signal.SIGKILL, worker.stdout.read() if worker.stdout else ""
        assert seen["state"] in ("active", "idle in transaction"), seen

        deadline = time.monotonic() + 30
        while backend_of(url, app) is not None and time.monotonic() < deadline:  # PostgreSQL notices the dead client
            time.sleep(0.1)
        assert backend_of(url, app) is None, "the dead worker's backend is still there"
        kept = warehouse.partition_rows(url, target, partition)
        assert len(kept) == 5 and {r["energy_kwh"] for r in kept} == {1.0}  # rolled back: the first publish's rows

        again = warehouse.publish(url, target, partition, kpi_rows(day, big, energy=2.0), "west_guizhou")
        assert (again.rows_before, again.rows_after, again.changed) == (5, big, True)
        with arrowdb.connect(url) as conn:
            cursor = conn.cursor()
            cursor.execute(
                "SELECT count(*), count(DISTINCT machine_id), min(energy_kwh), max(energy_kwh) FROM daily_kpis"
            )
            assert cursor.fetchall() == [(big, big, 2.0, 2.0)]  # every row once, none of the old ones
            cursor.close()


# -- 3. the hub's disk full during put --------------------------------------------------------------


@contextmanager
def full_disk(path: Path, size: str, user: str) -> Iterator[None]:
    """A tmpfs of ``size`` over ``path``, owned by ``user``, for the block."""
    entry = pwd.getpwnam(user)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755,uid={entry.pw_uid},gid={entry.pw_gid}", "tmpfs", path],
        check=True,
    )
    try:
        yield
    finally:
        for _ in range(50):  # a runner process may still be finishing on it
            if subprocess.run(["umount", path], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", path], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small file system over the hub's chunk store")
def test_a_full_disk_on_the_hub_fails_the_transfer_saying_so_and_names_nothing(hubs, tmp_path) -> None:
    hub, run = "west_ningxia", f"faults-disk-{time.monotonic_ns()}"
    store, manifest = readings(tmp_path, date(2026, 9, 2), machines=450)
    assert manifest.bytes > 2 << 20, manifest.bytes  # over twice the 1 MB the hub has
    chunks = hub_root(hub) / "chunks"
    started = time.monotonic()
    with full_disk(chunks, "1m", "eastwest-hub"):
        with pytest.raises(HubError) as failed:
            TransferEngine(hub).push(run, "readings", store, manifest)
        message = str(failed.value)
        assert not list(chunks.rglob("*.partial"))  # no half-written chunk left behind
    assert time.monotonic() - started < 30  # it stops at once: retrying rounds cannot free space
    assert f"hub {hub!r}" in message and "disk is full" in message, message
    assert "free space" in message, message  # says what to do
    assert "Traceback" not in message and "internal error" not in message and "\n" not in message, message
    assert not list((hub_root(hub) / "scratch").glob(f"{run}/*.dataset.json"))  # nothing named on the hub

    retry = TransferEngine(hub).push(run, "readings", store, manifest)  # space is back: the retry works
    assert retry.rows == manifest.rows
    assert (hub_root(hub) / "scratch" / run / "readings.dataset.json").exists()


# -- 4. a damaged result chunk on fetch -------------------------------------------------------------


def test_a_result_chunk_damaged_on_the_hub_fails_fetch_naming_it_and_nothing_is_named_east(
    fault_bundle, data_dir, tmp_path
) -> None:
    from eastwest import SqlInput, Target, Workload
    from eastwest.east import steps
    from eastwest.east.plan import make_plan
    from eastwest.settings import Project, get_settings

    day = date(2026, 9, 3)
    workload = Workload(
        job="daily_kpis",
        inputs=SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
        target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
    )
    spec = workload.check(Project(ROOT))
    plan = make_plan(
        workload, spec, get_settings(), dag_id="faults", scope="nightly", hub="west_guizhou", start_day=day,
        end_day=date(2026, 9, 4), params={},
    )  # fmt: skip
    ctx = steps.RunContext.create("faults", workload, Project(ROOT))
    store, manifest = readings(tmp_path, day, machines=40)
    engine = TransferEngine(plan.hub)
    engine.push(plan.run_key, "readings", store, manifest)
    hook = WestHubHook(plan.hub)

    def compute() -> None:  # the compute step: the job, submitted detached, to its end
        hook.put_params(plan.run_key, plan.job, plan.params, fault_bundle)
        hook.submit_job(plan.run_key, plan.job, fault_bundle)
        deadline = time.monotonic() + 60
        while (status := hook.job_status(plan.run_key, plan.job))["state"] == "running":
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.3)
        assert status["state"] == "succeeded", status

    compute()
    result = wire.DatasetManifest.from_json(
        (hub_root(plan.hub) / "scratch" / plan.run_key / f"{plan.job}.dataset.json").read_text()
    )
    victim = result.chunks[0].sha256
    on_hub = wire.ChunkStore(hub_root(plan.hub) / "chunks").path(victim)
    data = bytearray(on_hub.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a bit rot on the hub's disk
    on_hub.write_bytes(bytes(data))

    started = time.monotonic()
    with pytest.raises(HubError) as failed:
        steps.fetch(ctx, plan)
    message = str(failed.value)
    assert time.monotonic() - started < 20  # no rounds wasted on a copy that cannot get better
    assert f"chunk {victim[:12]}" in message and "damaged on hub 'west_guizhou'" in message, message
    assert "rerun the compute step" in message, message
    assert "a retry resumes" not in message, message  # a plain retry of fetch would fetch the same bad bytes
    assert not ctx.manifest_path(plan, plan.job).exists()  # nothing named as a complete dataset east
    assert not ctx.store(plan).path(victim).exists()
    assert not list(ctx.staging_dir(plan).rglob("*.partial"))
    # the hub no longer calls the job succeeded, so a cleared compute task submits it again
    # instead of re-attaching to the old result
    status = WestHubHook("west_guizhou").job_status(plan.run_key, plan.job)
    assert status["state"] == "failed" and "no longer whole on this hub" in status["message"], status

    compute()  # what the message says: the job writes its result again
    fetched = steps.fetch(ctx, plan)
    assert fetched["rows"] == result.rows > 0
    got, table = steps.read_result(ctx, plan)
    assert got == result and table.num_rows == result.rows
