"""Hub slots, the hub's queue, core-seconds and the probe, on real sshd hubs.

A hub runs at most ``slots`` jobs at once (``limits.json``); the others wait in its queue with
status ``running`` and ``queued`` true. The supervisor measures each job's CPU time and wait, and
the probe tells placement how busy a hub is. These tests rewrite ``limits.json`` of one hub,
``west_ningxia``, and put it back afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import TEST_HOME
from eastwest.hub.hook import WestHubHook
from eastwest.hub.transfer import TransferEngine
from eastwest.west import jobctl, protocol, wire
from eastwest_dev import localhubs
from test_hubs import ship_bundle

pytestmark = pytest.mark.integration

HUB = "west_ningxia"

NAP = '''"""Sleeps for a while: holds a hub slot without using the CPU."""

import time

import polars as pl

INPUTS = ("readings",)
PARAMS = {"seconds": {"type": "number", "default": 2, "minimum": 0, "maximum": 60}}


def transform(readings: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    print("nap started", flush=True)
    time.sleep(params["seconds"])
    return readings
'''

BURN = '''"""Keeps one CPU busy for a while."""

import time

import polars as pl

INPUTS = ("readings",)
PARAMS = {"seconds": {"type": "number", "default": 1, "minimum": 0, "maximum": 60}}


def transform(readings: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    end = time.process_time() + params["seconds"]
    n = 0
    while time.process_time() < end:
        n += 1
    return readings.with_columns(pl.lit(n).alias("spins"))
'''


def hub_root() -> Path:
    return TEST_HOME / "hubs" / HUB / "root"


def job_dir(run: str, job: str) -> Path:
    return hub_root() / "scratch" / run / f"{job}.job"


@pytest.fixture(scope="module")
def slot_bundle(hubs, tmp_path_factory) -> str:
    """A bundle with the two jobs above, shipped and installed on the hub; its digest."""
    tmp = tmp_path_factory.mktemp("slot-jobs")
    jobs_dir = tmp / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "nap.py").write_text(NAP)
    (jobs_dir / "burn.py").write_text(BURN)
    return ship_bundle(HUB, "slots-bundle", tmp, jobs_dir)


@pytest.fixture
def slots(slot_bundle):
    """Set the hub's ``slots`` (its other limits stay); the deployed limits come back afterwards."""
    path = hub_root() / "limits.json"
    before = path.read_text()

    def set_slots(count: int) -> None:
        tmp = path.with_name("limits.json.tmp")
        tmp.write_text(json.dumps({**json.loads(before), "slots": count}))
        tmp.replace(path)  # a supervisor starting now reads the old file or the new one, never half

    yield set_slots
    path.write_text(before)


def new_run(tmp_path: Path, name: str) -> str:
    """A run with a tiny readings input on the hub."""
    run = f"{name}-{time.monotonic_ns()}"
    readings = pa.table({"machine_id": ["M1", "M2"], "power_kw": [1.0, 2.0]})
    store = wire.ChunkStore(tmp_path / f"east-{run}")
    TransferEngine(HUB).push(run, "readings", store, wire.write_chunks(readings.to_batches(), readings.schema, store))
    return run


def submit(run: str, job: str, digest: str, **params: Any) -> None:
    hook = WestHubHook(HUB)
    hook.put_params(run, job, params, digest)
    hook.submit_job(run, job, digest)


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def wait_done(run: str, job: str, timeout: float = 60.0) -> dict[str, Any]:
    hook = WestHubHook(HUB)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = hook.job_status(run, job)
        if status["state"] != jobctl.RUNNING:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job} of {run} still running after {timeout}s")


def slot_events(run: str) -> dict[str, dict[str, Any]]:
    """The run's lines in the hub's slots.log, by event (start, end)."""
    path = hub_root() / "log" / jobctl.SLOTS_LOG
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return {e["event"]: e for e in lines if e["run"] == run}


def running_then_queued(tmp_path: Path, digest: str, name: str, seconds: float) -> tuple[str, str]:
    """A nap holding the hub's only slot, and a second one queued behind it; their runs."""
    first, second = new_run(tmp_path, f"{name}-a"), new_run(tmp_path, f"{name}-b")
    submit(first, "nap", digest, seconds=seconds)
    wait_for(lambda: (job_dir(first, "nap") / "slot").exists(), "the first job taking the slot")
    submit(second, "nap", digest, seconds=seconds)
    wait_for(lambda: WestHubHook(HUB).job_status(second, "nap").get("queued") is True, "the second job queueing")
    return first, second


def test_one_slot_queues_the_second_job_and_two_slots_run_both_at_once(slot_bundle, slots, tmp_path) -> None:
    slots(1)
    first, second = running_then_queued(tmp_path, slot_bundle, "one-slot", 1.5)
    waiting = WestHubHook(HUB).job_status(second, "nap")
    assert waiting["state"] == "running" and waiting["message"] == "queued for a hub slot", waiting
    assert WestHubHook(HUB).job_status(first, "nap")["queued"] is False
    done = [wait_done(run, "nap") for run in (first, second)]
    assert [d["state"] for d in done] == ["succeeded", "succeeded"], done
    a, b = slot_events(first), slot_events(second)
    assert a["start"]["at"] < a["end"]["at"] <= b["start"]["at"] < b["end"]["at"], (a, b)
    assert a["start"]["slot"] == b["start"]["slot"] == 0
    assert done[1]["queued_seconds"] > 0.5 and done[0]["queued_seconds"] < 0.5, done
    assert (job_dir(second, "nap") / "slot").read_text().strip() == "0"
    assert "waiting for a hub slot (1 of 1 busy)" in WestHubHook(HUB).job_log(second, "nap").decode()

    slots(2)
    first, second = new_run(tmp_path, "two-slots-a"), new_run(tmp_path, "two-slots-b")
    for run in (first, second):
        submit(run, "nap", slot_bundle, seconds=1.5)
    done = [wait_done(run, "nap") for run in (first, second)]
    assert [d["state"] for d in done] == ["succeeded", "succeeded"], done
    a, b = slot_events(first), slot_events(second)
    assert a["start"]["at"] < b["end"]["at"] and b["start"]["at"] < a["end"]["at"], (a, b)  # they overlap
    assert {a["start"]["slot"], b["start"]["slot"]} == {0, 1}
    assert all(d["queued_seconds"] < 0.5 for d in done), done


def probe_in_process(root: Path) -> tuple[dict[str, Any], float]:
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        assert jobctl.main(["--root", str(root), jobctl.PROBE]) == 0
    return json.loads(out.getvalue()), time.perf_counter() - started


def test_the_probe_reports_the_hub_and_counts_running_and_queued_jobs(slot_bundle, slots, tmp_path) -> None:
    hook = WestHubHook(HUB)
    idle = hook.probe(timeout=5)
    declared = int(os.environ.get("EASTWEST_HUB_SLOTS") or localhubs.DEFAULT_LIMITS["slots"])
    assert idle["slots"] == declared and idle["limits"]["slots"] == declared  # as localhubs deployed it
    types = {
        "version": str, "protocol": int, "slots": int, "running": int, "queued": int, "load1": float,
        "cpus": int, "free_disk_bytes": int, "free_memory_bytes": int, "limits": dict, "bundles": list, "cache": dict,
        "time": float,
    }  # fmt: skip
    assert set(idle) == set(types) and all(isinstance(idle[k], t) for k, t in types.items()), idle
    assert idle["running"] == idle["queued"] == 0 and idle["protocol"] == jobctl.PROTOCOL_VERSION
    assert idle["cpus"] == os.cpu_count() and idle["load1"] >= 0 and abs(idle["time"] - time.time()) < 5
    assert 0 < idle["free_disk_bytes"] <= os.statvfs(hub_root()).f_blocks * os.statvfs(hub_root()).f_frsize
    assert 0 < idle["free_memory_bytes"] <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert idle["bundles"][0] == slot_bundle and len(idle["bundles"]) <= jobctl.PROBE_BUNDLES
    assert idle["limits"]["max_memory_mb"] > 0 and idle["limits"]["max_cpu_seconds"] > 0
    stored = list((hub_root() / "chunks").glob("*/*.arrows"))
    assert idle["cache"] == {
        "chunks": len(stored),
        "bytes": sum(c.stat().st_size for c in stored),
    }  # the hubs page shows it
    assert probe_in_process(hub_root())[1] < 0.1  # the hub's side of the probe is cheap

    slots(1)
    first, second = running_then_queued(tmp_path, slot_bundle, "probe", 4)
    busy = hook.probe()
    assert (busy["slots"], busy["running"], busy["queued"]) == (1, 1, 1), busy
    for run in (second, first):
        hook.kill_job(run, "nap")
    assert (hook.probe()["running"], hook.probe()["queued"]) == (0, 0)


def test_a_probe_of_a_hub_that_never_answers_fails_within_its_timeout(hubs, monkeypatch) -> None:
    from eastwest.hub.hook import HubError

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never says a word
        conn = {**json.loads(os.environ[f"AIRFLOW_CONN_{HUB.upper()}"]), "port": silent.getsockname()[1]}
        monkeypatch.setenv("AIRFLOW_CONN_WEST_SILENT", json.dumps(conn))
        started = time.monotonic()
        with pytest.raises(HubError, match="west_silent"):
            WestHubHook("west_silent").probe(timeout=1)
        assert time.monotonic() - started < 3  # one attempt bounded by the timeout, not three with pauses


def test_core_seconds_are_the_jobs_cpu_time_not_its_wall_time(slot_bundle, slots, tmp_path) -> None:
    slots(2)
    run = new_run(tmp_path, "core-seconds")
    submit(run, "burn", slot_bundle, seconds=1.0)
    submit(run, "nap", slot_bundle, seconds=2.0)
    burn, nap = wait_done(run, "burn"), wait_done(run, "nap")
    assert burn["state"] == nap["state"] == "succeeded", (burn, nap)
    assert 1.0 < burn["core_seconds"] <= burn["seconds"] * os.cpu_count() + 0.5, burn
    assert nap["seconds"] > 2.0 and nap["core_seconds"] < nap["seconds"] - 1.0, nap  # asleep, not on a CPU
    usage = WestHubHook(HUB).job_usage(run, "burn")
    assert usage == {k: burn[k] for k in ("core_seconds", "queued_seconds", "seconds")}
    assert json.loads((job_dir(run, "burn") / "exit.json").read_text())["core_seconds"] == burn["core_seconds"]


def test_killing_a_queued_job_ends_it_before_it_ever_runs(slot_bundle, slots, tmp_path) -> None:
    slots(1)
    first, second = running_then_queued(tmp_path, slot_bundle, "kill-queued", 3)
    started = time.monotonic()
    WestHubHook(HUB).kill_job(second, "nap")
    assert time.monotonic() - started < jobctl.KILL_GRACE  # the supervisor stopped at once, no SIGKILL needed
    status = WestHubHook(HUB).job_status(second, "nap")
    assert status["state"] == "failed" and status["message"] == "killed on request", status
    ended = json.loads((job_dir(second, "nap") / "exit.json").read_text())
    assert ended["exit_code"] == -signal.SIGTERM and ended["slot"] is None and ended["core_seconds"] == 0.0, ended
    assert ended["queued_seconds"] > 0
    assert slot_events(second) == {}  # it never held a slot
    assert not (job_dir(second, "nap") / "queued").exists()
    assert "nap started" not in WestHubHook(HUB).job_log(second, "nap").decode()
    assert wait_done(first, "nap")["state"] == "succeeded"  # the running job was left alone


def ssh(hubs, request: str) -> subprocess.CompletedProcess[str]:
    """One request through OpenSSH's client as the hub user, the way tests/test_lockdown.py does."""
    conn = hubs[HUB]
    known = TEST_HOME / "hubs" / f"known_hosts_{HUB}"
    known.write_text(f"[127.0.0.1]:{conn['port']} {conn['extra']['host_key']}\n")
    command = ["ssh", "-i", conn["extra"]["key_file"], "-p", str(conn["port"])]
    for option in (f"UserKnownHostsFile={known}", "StrictHostKeyChecking=yes", "BatchMode=yes", "LogLevel=ERROR"):
        command += ["-o", option]
    command += [f"{conn['login']}@127.0.0.1", request]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_forced_command_accepts_probe_and_still_refuses_everything_else(hubs) -> None:
    probe = ssh(hubs, jobctl.PROBE)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["slots"] >= 1
    for request, reason in (
        (f"supervise r1 nap --bundle {'0' * 64}", "'supervise' is not a runner command"),
        ("probe; id", "'probe;' is not a runner command"),
        ("id", "'id' is not a runner command"),
    ):
        refused = ssh(hubs, request)
        assert refused.returncode == protocol.EXIT_USAGE and f"refused: {reason}" in refused.stderr, refused
        assert refused.stdout == ""
    extra = ssh(hubs, "probe --root /")  # the data root is the forced command's, not the request's
    assert extra.returncode == protocol.EXIT_USAGE and "unrecognized arguments" in extra.stderr, extra
