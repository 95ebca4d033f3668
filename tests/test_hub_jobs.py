"""Detached jobs on real sshd hubs: submit, watch, re-attach, kill, and the hub's resource limits.

The east's key runs only the runner, so these go through the runner's own job control
(``submit``/``status``/``log``/``kill``), the trigger that watches a job, and the operator built on
``ResumableJobMixin``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import HUB_PORT_BASE, ROOT, TEST_HOME, WEST_PYTHON
from eastwest.hub.hook import HubError, WestHubHook
from eastwest.hub.transfer import TransferEngine
from eastwest.west import wire
from test_hubs import ship_bundle

pytestmark = pytest.mark.integration

JOBS = ROOT / "include" / "jobs"
HUB = "west_guizhou"

SLEEPY = '''"""Sleeps (optionally with a child process), so that kills and re-attaching can be watched."""

import subprocess
import sys
import time

import polars as pl

INPUTS = ("readings",)
PARAMS = {
    "seconds": {"type": "number", "default": 300, "minimum": 0, "maximum": 900},
    "marker": {"type": "string", "default": "sleepy"},
    "child": {"type": "boolean", "default": False},
}


def transform(readings: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    if params["child"]:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)", params["marker"] + "-child"])
    print("sleepy started", params["marker"], flush=True)
    for second in range(int(params["seconds"])):
        print("sleepy second", second, flush=True)
        time.sleep(1)
    return readings
'''

HOG = '''"""Allocates far more memory than a hub allows."""

import polars as pl

INPUTS = ("readings",)
PARAMS = {}


def transform(readings: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    hoard = bytearray(3 * 1024**3)
    return readings.with_columns(pl.lit(len(hoard)).alias("n"))
'''

SPIN = '''"""Spins on the CPU forever."""

import polars as pl

INPUTS = ("readings",)
PARAMS = {}


def transform(readings: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    n = 0
    while True:
        n += 1
'''


def hub_root(hub: str = HUB) -> Path:
    return TEST_HOME / "hubs" / hub / "root"


@pytest.fixture(scope="module")
def test_bundle(hubs, tmp_path_factory) -> str:
    """The project's jobs plus the test jobs above, shipped and installed on the hub; its digest."""
    tmp = tmp_path_factory.mktemp("jobs")
    jobs_dir = tmp / "jobs"
    shutil.copytree(JOBS, jobs_dir)
    for name, source in (("sleepy", SLEEPY), ("hog", HOG), ("spin", SPIN)):
        (jobs_dir / f"{name}.py").write_text(source)
    return ship_bundle(HUB, "bundle-run", tmp, jobs_dir)


def new_run(tmp_path: Path, name: str) -> str:
    """A run with a tiny readings input on the hub."""
    run = f"{name}-{time.monotonic_ns()}"
    readings = pa.table({"machine_id": ["M1", "M2"], "power_kw": [1.0, 2.0]})
    store = wire.ChunkStore(tmp_path / f"east-{run}")
    manifest = wire.write_chunks(readings.to_batches(), readings.schema, store)
    TransferEngine(HUB).push(run, "readings", store, manifest)
    return run


def submit(run: str, job: str, digest: str, **params: Any) -> dict[str, Any]:
    hook = WestHubHook(HUB)
    hook.put_params(run, job, params, digest)
    return hook.submit_job(run, job, digest)


def wait_state(run: str, job: str, timeout: float = 60.0) -> dict[str, Any]:
    hook = WestHubHook(HUB)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = hook.job_status(run, job)
        if status["state"] != "running":
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job} of {run} still running after {timeout}s")


def wait_for_output(run: str, job: str, text: str, timeout: float = 60.0) -> None:
    log = hub_root() / "scratch" / run / f"{job}.job" / "log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared in {log}")


def running(marker: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(pid)


def test_a_status_request_that_waits_answers_as_soon_as_the_job_ends(test_bundle, tmp_path) -> None:
    """``status --wait`` holds the answer on the hub until the job ends: the east notices the end
    within a fraction of a second instead of at its next poll, with one request instead of many."""
    run = new_run(tmp_path, "long-poll")
    submit(run, "sleepy", test_bundle, seconds=3, marker=run)
    wait_for_output(run, "sleepy", "sleepy second 2")  # its last line: it ends about a second later
    hook, requests = WestHubHook(HUB), 0
    while True:
        requests += 1
        status = hook.job_status(run, "sleepy", wait=20)
        answered = time.time()
        if status["state"] != "running":
            break
    assert status["state"] == "succeeded" and requests == 1
    ended = (hub_root() / "scratch" / run / "sleepy.job" / "exit.json").stat().st_mtime
    assert 0 <= answered - ended < 0.5
    with pytest.raises(HubError, match="is not a wait of 0 to 30 seconds"):
        hook.call(["status", run, "sleepy", "--wait", "3600"])


def test_a_job_runs_detached_as_the_hub_user_and_a_second_submit_starts_nothing(test_bundle, tmp_path) -> None:
    import pwd

    run = new_run(tmp_path, "detached")
    first = submit(run, "sleepy", test_bundle, seconds=4, marker=run)
    again = WestHubHook(HUB).submit_job(run, "sleepy", test_bundle)
    assert again["pid"] == first["pid"] and again["state"] == "running"
    wait_for_output(run, "sleepy", "sleepy started")
    pids = running(run)
    assert pids, "the job is not running"
    hub_uid = pwd.getpwnam("eastwest-hub").pw_uid if os.geteuid() == 0 else os.getuid()
    assert {uid_of(p) for p in pids} == {hub_uid} and hub_uid != 0
    status = wait_state(run, "sleepy")
    assert status["state"] == "succeeded" and status["exit_code"] == 0, status
    log = WestHubHook(HUB).job_log(run, "sleepy").decode()
    assert log.count("sleepy started") == 1 and "sleepy second 3" in log
    assert WestHubHook(HUB).job_log(run, "sleepy", offset=len(log.encode()) - 10).decode() == log[-10:]
    # the result is a dataset of the run, owned by the hub user like everything it writes
    result = hub_root() / "scratch" / run / "sleepy.dataset.json"
    assert result.exists() and result.stat().st_uid == hub_uid


def test_a_job_that_fails_reports_its_exit_code_and_output(test_bundle, tmp_path) -> None:
    run = new_run(tmp_path, "fails")
    WestHubHook(HUB).submit_job(run, "daily_kpis", test_bundle)  # daily_kpis needs columns readings lack
    status = wait_state(run, "daily_kpis")
    assert status["state"] == "failed" and status["exit_code"] == 1, status
    assert status["message"] == "the job exited with code 1"
    assert "ColumnNotFoundError" in WestHubHook(HUB).job_log_tail(run, "daily_kpis")


@pytest.mark.parametrize("how", ["on_kill", "trigger_failure", "timeout"])
def test_killing_failing_the_monitor_or_timing_out_kills_the_process_group(test_bundle, tmp_path, how) -> None:
    from airflow.sdk.bases.operator import TriggerFailureReason
    from airflow.sdk.exceptions import AirflowException, TaskDeferralTimeout

    from eastwest.airflow.operators import WestJobOperator

    run = new_run(tmp_path, f"kill-{how}")
    submit(run, "sleepy", test_bundle, seconds=600, marker=run, child=True)
    wait_for_output(run, "sleepy", "sleepy started")
    assert len(running(run)) >= 3  # supervisor, job, child
    op = WestJobOperator(task_id="compute", plan={"hub": HUB, "job": "sleepy", "run_key": run}, timeout=1)
    if how == "on_kill":
        op.on_kill()
    elif how == "trigger_failure":
        with pytest.raises(TaskDeferralTimeout):
            op.resume_execution("__fail__", {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, context={})
    else:
        with pytest.raises(AirflowException, match="ran past its timeout of 0:00:01; its process group was killed"):
            op.execute_complete({}, {"status": "timeout", "message": "the job ran past its timeout"})
    deadline = time.monotonic() + 15
    while running(run) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(run), "a process of the job survived"
    status = WestHubHook(HUB).job_status(run, "sleepy")
    assert status["state"] == "failed" and status["message"] == "killed on request"


class Store(dict):
    """A task_state_store: what ResumableJobMixin keeps across a task's tries."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


class TI:
    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.stats_tags: dict[str, str] = {}

    def xcom_pull(self, task_ids: str) -> dict[str, str]:
        return {"bundle": self.digest}


def test_a_retry_re_attaches_to_the_running_job_and_takes_a_finished_result(test_bundle, tmp_path) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from eastwest.airflow.operators import WestJobOperator

    run = new_run(tmp_path, "resume")
    plan = {"hub": HUB, "job": "sleepy", "run_key": run, "params": {"seconds": 5, "marker": run}}
    context = {"ti": TI(test_bundle), "task_state_store": Store()}
    op = WestJobOperator(task_id="compute", plan=plan)
    with pytest.raises(TaskDeferred) as first:
        op.execute(context)
    stored = context["task_state_store"]["eastwest_west_job"]
    assert stored["run_key"] == run and first.value.trigger.run_key == run
    wait_for_output(run, "sleepy", "sleepy started")
    pid = WestHubHook(HUB).job_status(run, "sleepy")
    # the worker died; the retry finds the job still running and watches it instead of starting another
    with pytest.raises(TaskDeferred):
        WestJobOperator(task_id="compute", plan=plan).execute(context)
    assert wait_state(run, "sleepy")["state"] == "succeeded"
    # another retry after the job finished takes its result without running it again
    assert WestJobOperator(task_id="compute", plan=plan).execute(context)["state"] == "succeeded"
    log = WestHubHook(HUB).job_log(run, "sleepy").decode()
    assert log.count("sleepy started") == 1, log
    assert pid["state"] == "running"
    # job code shipped again since (another bundle): the old result is not taken, the job runs anew
    assert op.get_job_status(stored, {"ti": TI("f" * 64)}) == "stale"
    assert op.get_job_status(stored, {"ti": TI(test_bundle)}) == "succeeded"


def test_without_a_triggerer_the_operator_watches_from_the_worker(test_bundle, tmp_path, capfd) -> None:
    from airflow.sdk.exceptions import AirflowException

    from eastwest.airflow.operators import WestJobOperator

    run = new_run(tmp_path, "sync")
    plan = {"hub": HUB, "job": "sleepy", "run_key": run, "params": {"seconds": 2, "marker": run}}
    context = {"ti": TI(test_bundle), "task_state_store": Store()}
    result = WestJobOperator(task_id="compute", plan=plan, deferrable=False).execute(context)
    assert result["state"] == "succeeded"
    out = capfd.readouterr()
    assert "sleepy second 1" in out.out + out.err  # the job's output streamed into the task log
    failing = {"hub": HUB, "job": "daily_kpis", "run_key": run, "params": {}}
    with pytest.raises(AirflowException, match=r"failed: the job exited with code 1\. Last output of the job:"):
        WestJobOperator(task_id="compute", plan=failing, deferrable=False).execute(
            {"ti": TI(test_bundle), "task_state_store": Store()}
        )


def test_the_watch_survives_the_hubs_sshd_stopping_while_the_job_runs(test_bundle, tmp_path) -> None:
    """sshd stops while the job runs and the monitor is deferred: the job goes on, the watch resumes."""
    from eastwest.airflow.triggers import WestJobTrigger
    from eastwest_dev import localhubs

    run = new_run(tmp_path, "sshd-down")
    submit(run, "sleepy", test_bundle, seconds=6, marker=run)
    trigger = WestJobTrigger(HUB, run, "sleepy", poll_interval=0.5, lost_after=120)
    hub = next(h for h in localhubs.hubs_for(TEST_HOME / "hubs", HUB_PORT_BASE) if h.name == HUB)

    async def watch() -> Any:
        events = trigger.run()
        task = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(1.5)
        pid = hub.pid()  # the hub's sshd goes away while the job runs, its open sessions too
        subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
        os.kill(pid, 9)
        await asyncio.sleep(8)  # the job finishes while nobody can reach the hub
        assert not task.done()
        await asyncio.to_thread(localhubs.up, TEST_HOME / "hubs", HUB_PORT_BASE, str(WEST_PYTHON))
        return await asyncio.wait_for(task, 90)

    event = asyncio.run(watch())
    assert event.payload["status"] == "succeeded", event.payload
    log = WestHubHook(HUB).job_log(run, "sleepy").decode()
    assert log.count("sleepy started") == 1


def test_a_monitor_that_cannot_reach_the_hub_gives_up_after_lost_after(test_bundle, tmp_path, monkeypatch) -> None:
    from eastwest.airflow.triggers import WestJobTrigger

    monkeypatch.setenv(
        "AIRFLOW_CONN_WEST_NOWHERE",
        json.dumps({**json.loads(os.environ["AIRFLOW_CONN_WEST_GUIZHOU"]), "port": 1}),
    )
    trigger = WestJobTrigger("west_nowhere", "some-run", "sleepy", poll_interval=0.2, lost_after=1)
    event = asyncio.run(trigger.run().__anext__())
    assert event.payload["status"] == "lost" and "unreachable" in event.payload["message"]


@pytest.fixture
def limits():
    path = hub_root() / "limits.json"
    before = path.read_text()
    yield path
    path.write_text(before)


def test_a_job_over_the_hubs_memory_limit_fails_naming_the_limit(test_bundle, tmp_path, limits) -> None:
    limits.write_text(json.dumps({"max_memory_mb": 1024, "slots": 4}))
    run = new_run(tmp_path, "hog")
    submit(run, "hog", test_bundle)
    status = wait_state(run, "hog")
    assert status["state"] == "failed"
    assert "exceeded the hub's memory limit of 1024 MB (max_memory_mb in limits.json)" in status["message"]


def test_a_job_over_the_hubs_cpu_limit_fails_naming_the_limit(test_bundle, tmp_path, limits) -> None:
    limits.write_text(json.dumps({"max_cpu_seconds": 2, "slots": 4}))
    run = new_run(tmp_path, "spin")
    submit(run, "spin", test_bundle)
    status = wait_state(run, "spin", timeout=30)
    assert status["state"] == "failed"
    assert "used the hub's CPU-time limit of 2 s (max_cpu_seconds in limits.json)" in status["message"]
