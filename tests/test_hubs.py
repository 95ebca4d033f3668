"""The hub hook and the job operator against real sshd hubs on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import ROOT, TEST_HOME, hub_connection, load_dag
from eastwest.hooks import HubError, WestHubHook
from eastwest.pipeline import make_plan
from eastwest.transfer import TransferEngine
from westnode import wire

pytestmark = pytest.mark.integration


@pytest.fixture
def dataset(tmp_path) -> tuple[wire.ChunkStore, wire.DatasetManifest]:
    rows = 400_000
    t = pa.table({"id": pa.array(range(rows), pa.int64()), "v": pa.array([i * 0.5 for i in range(rows)])})
    store = wire.ChunkStore(tmp_path / "east")
    return store, wire.write_chunks(t.to_batches(max_chunksize=50_000), t.schema, store, target_raw_bytes=1 << 20)


def with_connection(monkeypatch, hub: str, **changes) -> None:
    conn = hub_connection(hub)
    extra = {**conn["extra"], **changes.pop("extra", {})}
    conn = {**conn, **changes, "extra": {k: v for k, v in extra.items() if v is not None}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{hub.upper()}", json.dumps(conn))


def test_ship_and_fetch_round_trip_is_byte_identical(hubs, dataset, tmp_path) -> None:
    store, manifest = dataset
    engine = TransferEngine("west_ningxia")
    pushed = engine.push("roundtrip", "readings", store, manifest)
    headers = sum(len(wire.frame_header(c.sha256, c.bytes)) for c in manifest.chunks)
    assert pushed.wire_bytes == manifest.bytes + headers and pushed.chunks_skipped == 0
    back = wire.ChunkStore(tmp_path / "back")
    got, pulled = engine.pull("roundtrip", "readings", back)
    assert got == manifest
    for chunk in manifest.chunks:
        assert back.path(chunk.sha256).read_bytes() == store.path(chunk.sha256).read_bytes()
    hub_root = TEST_HOME / "hubs" / "west_ningxia" / "root"
    assert (hub_root / "scratch" / "roundtrip" / "readings.dataset.json").exists()
    assert not [p for p in hub_root.rglob("*.partial")]
    WestHubHook("west_ningxia").cleanup("roundtrip")
    assert not (hub_root / "scratch" / "roundtrip").exists()


def test_wrong_pinned_host_key_is_refused(hubs, monkeypatch) -> None:
    other_key = hub_connection("west_ningxia")["extra"]["host_key"]  # a real key, but not this hub's
    with_connection(monkeypatch, "west_guizhou", extra={"host_key": other_key})
    with pytest.raises(HubError, match="host key does not match the pinned key in connection 'west_guizhou'"):
        with WestHubHook("west_guizhou").get_managed_conn():
            pass


def test_known_hosts_entry_cannot_override_the_pin(hubs, monkeypatch, tmp_path) -> None:
    """paramiko prefers ~/.ssh/known_hosts; the hook still refuses a server that is not the pinned one."""
    real = hub_connection("west_guizhou")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{real['port']} {real['extra']['host_key']}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    with_connection(
        monkeypatch, "west_guizhou", extra={"host_key": hub_connection("west_ningxia")["extra"]["host_key"]}
    )
    with pytest.raises(HubError, match="host key does not match the pinned key"):
        with WestHubHook("west_guizhou").get_managed_conn():
            pass


def test_job_monitor_pins_the_host_key_too(hubs, monkeypatch) -> None:
    """The deferrable monitor (asyncssh) connects only to the pinned key, on the hub's port."""
    import asyncio

    import asyncssh
    from airflow.providers.ssh.triggers.ssh_remote_job import SSHRemoteJobTrigger

    def trigger() -> SSHRemoteJobTrigger:
        return SSHRemoteJobTrigger(
            ssh_conn_id="west_guizhou",
            remote_host=None,
            job_id="j",
            job_dir="/nonexistent",
            log_file="/nonexistent/log",
            exit_code_file="/nonexistent/ec",
            remote_os="posix",
        )

    async def connect_and_close() -> None:
        conn = await trigger()._connect()
        conn.close()

    asyncio.run(connect_and_close())  # the right key connects
    with_connection(
        monkeypatch, "west_guizhou", extra={"host_key": hub_connection("west_ningxia")["extra"]["host_key"]}
    )
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        asyncio.run(connect_and_close())


def test_connection_without_pinned_key_is_refused(hubs, monkeypatch) -> None:
    with_connection(monkeypatch, "west_guizhou", extra={"host_key": None, "no_host_key_check": True})
    with pytest.raises(HubError, match="does not pin a host key"):
        WestHubHook("west_guizhou")


def test_hub_that_is_down_gives_a_clear_error(hubs, monkeypatch) -> None:
    with_connection(monkeypatch, "west_guizhou", port=22299)
    with pytest.raises(HubError, match="unreachable at 127.0.0.1:22299.*is its sshd running"):
        with WestHubHook("west_guizhou", conn_retry_attempts=1).get_managed_conn():
            pass


def test_unregistered_job_is_refused_by_the_hub(hubs) -> None:
    with pytest.raises(HubError, match="job 'format_disk' is not registered on this node"):
        WestHubHook("west_guizhou").put_params("r1", "format_disk", {})


def test_failing_job_fails_the_task_with_its_stderr(hubs, airflow_db, capfd) -> None:
    dag = load_dag(ROOT / "tests" / "dags" / "test_west_job_failure.py")
    run = dag.test()
    out = capfd.readouterr()
    log = out.out + out.err
    assert str(run.state) in ("failed", "DagRunState.FAILED")
    assert "Remote job failed with exit code: 4" in log
    assert "input readings is not on this hub for run nothing-shipped__20261124-20261125; ship it first" in log


def _running(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0


@pytest.mark.parametrize("how", ["on_kill", "trigger_timeout"])
def test_killing_or_timing_out_kills_the_remote_process_group(hubs, how) -> None:
    """A killed or timed-out task kills the job's process group on the hub, over the pinned connection."""
    from airflow.providers.ssh.utils.remote_job import RemoteJobPaths
    from airflow.sdk.bases.operator import TriggerFailureReason
    from airflow.sdk.exceptions import TaskDeferralTimeout

    from eastwest.operators import WestJobOperator

    plan = make_plan(
        scope="kill", start_day=pendulum_date(), end_day=pendulum_date(1), hub="west_guizhou", job="daily_kpis"
    ).to_dict()
    op = WestJobOperator(task_id="compute", plan=plan)
    hook = WestHubHook("west_guizhou")
    paths = RemoteJobPaths(job_id=f"kill_test_{how}", remote_os="posix", base_dir=hook.jobs_dir)
    Path(paths.job_dir).mkdir(parents=True, exist_ok=True)
    # A detached job on the hub as the provider starts them: its own session, a child, a pid file.
    marker = f"eastwest-kill-test-{how}-{time.monotonic_ns()}"
    subprocess.Popen(
        [
            "setsid",
            "bash",
            "-c",
            f"echo -n $$ > {paths.pid_file}; (exec -a {marker}-child sleep 300) & exec -a {marker} sleep 300",
        ],
        start_new_session=True,
    )
    for _ in range(100):
        if Path(paths.pid_file).exists() and Path(paths.pid_file).read_text() and _running(f"{marker}-child"):
            break
        time.sleep(0.05)
    assert _running(marker) and _running(f"{marker}-child")
    op._job_id, op._paths, op._detected_os = paths.job_id, paths, "posix"

    if how == "on_kill":
        op.on_kill()
    else:
        with pytest.raises(TaskDeferralTimeout):
            op.resume_execution("__fail__", {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, context={})
    for _ in range(100):
        if not _running(marker) and not _running(f"{marker}-child"):
            break
        time.sleep(0.05)
    assert not _running(marker), "the job's leader survived"
    assert not _running(f"{marker}-child"), "a child of the job survived"


def pendulum_date(offset: int = 0):
    from datetime import date, timedelta

    return date(2026, 11, 24) + timedelta(days=offset)
