"""The hub hook and the job operator against real sshd hubs on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import PROJECT_JOBS, ROOT, TEST_HOME, hub_connection, load_dag
from eastwest.hub.hook import HostKeyMismatch, HubError, WestHubHook
from eastwest.hub.transfer import TransferEngine
from eastwest.west import bundle, protocol, wire

pytestmark = pytest.mark.integration

JOBS = ROOT / "include" / "jobs"


def hub_root(hub: str) -> Path:
    return TEST_HOME / "hubs" / hub / "root"


def ship_bundle(hub: str, run: str, tmp_path: Path, jobs_dir: Path = JOBS, *, install: bool = True) -> str:
    """Ship a jobs package's bundle as run ``run``'s bundle dataset (as ``steps.ship`` does); return its digest."""
    files = bundle.collect(jobs_dir)
    table = bundle.to_table(files)
    store = wire.ChunkStore(tmp_path / f"east-bundle-{time.monotonic_ns()}")
    manifest = wire.write_chunks(table.to_batches(), table.schema, store, target_raw_bytes=64 << 20)
    TransferEngine(hub).push(run, protocol.BUNDLE_DATASET, store, manifest)
    digest = bundle.digest_of(bundle.describe(files))
    if install:
        WestHubHook(hub).install_bundle(run, digest)
    return digest


def run_job(hub: str, run: str, job: str, digest: str) -> None:
    WestHubHook(hub).call([protocol.RUN, run, job, "--bundle", digest], what=f"running {job}")


def unique_jobs_copy(tmp_path: Path) -> Path:
    """A copy of the project's jobs package with its own bundle digest (so tampering with it harms no other test)."""
    jobs_dir = tmp_path / "jobs"
    shutil.copytree(JOBS, jobs_dir)
    with open(jobs_dir / "daily_kpis.py", "a") as f:
        f.write(f"\n# copy for {tmp_path.name} {time.monotonic_ns()}\n")
    return jobs_dir


@pytest.fixture(scope="module")
def installed(hubs, tmp_path_factory) -> str:
    """The project's job bundle, installed on west_guizhou; its digest."""
    return ship_bundle("west_guizhou", "bundle-fixture", tmp_path_factory.mktemp("bundle"))


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
    headers = sum(len(protocol.frame_header(c.sha256, c.bytes)) for c in manifest.chunks)
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
        WestHubHook("west_guizhou").probe()


def test_known_hosts_entry_cannot_override_the_pin(hubs, monkeypatch, tmp_path) -> None:
    """An entry in ~/.ssh/known_hosts for the hub's real key does not let the hook talk to a hub
    whose key is not the connection's pin."""
    real = hub_connection("west_guizhou")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{real['port']} {real['extra']['host_key']}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    with_connection(
        monkeypatch, "west_guizhou", extra={"host_key": hub_connection("west_ningxia")["extra"]["host_key"]}
    )
    with pytest.raises(HubError, match="host key does not match the pinned key"):
        WestHubHook("west_guizhou").probe()


def test_the_openssh_data_path_refuses_a_wrong_key_whatever_the_users_ssh_set_up(
    hubs, dataset, monkeypatch, tmp_path
) -> None:
    """Transfers run OpenSSH's client with only the pinned key: the user's known_hosts (holding the
    hub's real key) and a config that turns checking off take no part, and nothing is sent."""
    real = hub_connection("west_guizhou")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{real['port']} {real['extra']['host_key']}\n")
    (tmp_path / ".ssh" / "config").write_text("Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    with_connection(
        monkeypatch, "west_guizhou", extra={"host_key": hub_connection("west_ningxia")["extra"]["host_key"]}
    )
    store, manifest = dataset
    engine = TransferEngine("west_guizhou")
    with pytest.raises(HostKeyMismatch, match="host key does not match the pinned key in connection 'west_guizhou'"):
        engine.push("wrong-key", "readings", store, manifest)
    assert not (TEST_HOME / "hubs" / "west_guizhou" / "root" / "scratch" / "wrong-key").exists()


def test_a_connection_holding_its_key_as_private_key_transfers_too(hubs, dataset, monkeypatch, tmp_path) -> None:
    """OpenSSH needs a key file: the key is written for the login only (0600, in the link's private
    directory) and removed before any data moves."""
    real = hub_connection("west_ningxia")
    key_text = Path(real["extra"]["key_file"]).read_text()
    with_connection(monkeypatch, "west_ningxia", extra={"key_file": None, "private_key": key_text})
    store, manifest = dataset
    metrics = TransferEngine("west_ningxia").push("inline-key", "readings", store, manifest)
    assert metrics.rows == manifest.rows
    back, _ = TransferEngine("west_ningxia").pull("inline-key", "readings", wire.ChunkStore(tmp_path / "back"))
    assert back == manifest


def test_a_transfer_leaves_no_ssh_process_or_file_behind(hubs, dataset, tmp_path, monkeypatch) -> None:
    """Only this test's own links are looked at: the session's Airflow stack may run tasks on the
    same hub meanwhile."""
    import psutil

    from eastwest.hub import openssh

    made: list[Path] = []
    enter = openssh.OpenSshLink.__enter__

    def recording(link):
        entered = enter(link)
        made.append(link._dir)
        return entered

    monkeypatch.setattr(openssh.OpenSshLink, "__enter__", recording)

    def ours() -> list[str]:
        found = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            line = " ".join(proc.info["cmdline"] or [])
            if proc.info["name"] == "ssh" and any(str(path) in line for path in made):
                found.append(line)
        return found

    store, manifest = dataset
    with TransferEngine("west_gansu", streams=3) as engine:  # one connection for both
        engine.push("tidy", "readings", store, manifest)
        masters = ours()
        engine.pull("tidy", "readings", wire.ChunkStore(tmp_path / "back"))
        assert ours() == masters and len(masters) == 1, masters  # the pull reused the push's connection
    assert len(made) == 1 and ours() == []
    other = pa.table({"id": pa.array(range(300_000), pa.int64()), "v": pa.array([i * 0.25 for i in range(300_000)])})
    fresh = wire.write_chunks(other.to_batches(max_chunksize=50_000), other.schema, store, target_raw_bytes=1 << 20)
    first = fresh.chunks[0]
    store.path(first.sha256).write_bytes(store.path(first.sha256).read_bytes()[:10])  # a local chunk cut short
    failing = TransferEngine("west_gansu", streams=1, max_rounds=1)
    with pytest.raises(HubError, match="could not be delivered"):
        failing.push("tidy-failed", "readings", store, fresh)
    assert len(made) == 2
    assert ours() == []  # a failed transfer closed its connection at once: nothing it queued flows on
    assert [path for path in made if path.exists()] == []


def test_a_link_directory_left_by_a_killed_process_is_swept(hubs, tmp_path) -> None:
    """A task killed with SIGKILL cannot close its link; the next link removes what it left."""
    import tempfile

    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = Path(tempfile.mkdtemp(prefix=f"eastwest-ssh-west_gansu-{dead.pid}-"))
    (orphan / "known_hosts").write_text("x\n")
    alive = Path(tempfile.mkdtemp(prefix=f"eastwest-ssh-west_gansu-{os.getpid()}-"))
    try:
        with TransferEngine("west_gansu", streams=1) as engine:
            with engine._linked():
                pass
        assert not orphan.exists()
        assert alive.exists()  # a living process's link is left alone
    finally:
        shutil.rmtree(orphan, ignore_errors=True)
        shutil.rmtree(alive, ignore_errors=True)


def logins(hub: str) -> int:
    """Logins the hub's sshd has accepted so far (each one a full handshake)."""
    return (TEST_HOME / "hubs" / hub / "sshd.log").read_text().count("Accepted publickey")


def test_short_commands_share_one_connection_and_a_changed_pin_never_reuses_it(hubs, monkeypatch) -> None:
    """A run's probe, status and clean-up commands go over one lingering master: one handshake for
    all of them. The master is found by everything the connection pins, so a connection whose host
    key changed gets no free ride on it and is refused."""
    hook = WestHubHook("west_ningxia")
    hook.probe()  # starts (or finds) the shared master
    before = logins("west_ningxia")
    for _ in range(5):
        assert WestHubHook("west_ningxia").job_status("shared-master", "daily_kpis")["state"] == "missing"
    WestHubHook("west_ningxia").cleanup("shared-master")
    assert logins("west_ningxia") == before  # six commands, no new login
    with_connection(
        monkeypatch, "west_ningxia", extra={"host_key": hub_connection("west_guizhou")["extra"]["host_key"]}
    )
    with pytest.raises(HostKeyMismatch, match="host key does not match the pinned key in connection 'west_ningxia'"):
        WestHubHook("west_ningxia").job_status("shared-master", "daily_kpis")


def test_a_lost_shared_connection_is_replaced_and_the_command_still_answers(hubs) -> None:
    import psutil

    hook = WestHubHook("west_ningxia")
    hook.probe()
    for proc in psutil.process_iter(["name", "cmdline"]):  # the link drops: the master dies under us
        line = " ".join(proc.info["cmdline"] or [])
        if (
            proc.info["name"] == "ssh"
            and "ControlMaster=yes" in line
            and "eastwest-ssh-" in line
            and f"-p {hub_connection('west_ningxia')['port']} " in line
        ):
            proc.kill()
    before = logins("west_ningxia")
    assert WestHubHook("west_ningxia").job_status("shared-master", "daily_kpis")["state"] == "missing"
    assert logins("west_ningxia") == before + 1  # one new handshake, then shared again
    WestHubHook("west_ningxia").job_status("shared-master", "daily_kpis")
    assert logins("west_ningxia") == before + 1


def test_the_shared_connections_directory_must_be_private(hubs, monkeypatch) -> None:
    import os
    import tempfile

    runtime = Path(tempfile.mkdtemp(dir="/tmp"))  # short: a control socket's path has a length limit
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    opened = runtime / f"eastwest-ssh-{os.getuid()}"
    opened.mkdir(mode=0o755)
    opened.chmod(0o755)  # others could reach the control socket and use our login
    with pytest.raises(HubError, match="closed to others"):
        WestHubHook("west_ningxia").job_status("shared-master", "daily_kpis")
    opened.chmod(0o700)
    assert WestHubHook("west_ningxia").job_status("shared-master", "daily_kpis")["state"] == "missing"
    assert (opened.stat().st_mode & 0o777) == 0o700
    WestHubHook("west_ningxia").call(["probe"])  # the master lingers …
    master = next(opened.iterdir()) / "master"
    assert master.is_socket() and (master.parent.stat().st_mode & 0o777) == 0o700
    subprocess.run(["ssh", "-o", f"ControlPath={master}", "-O", "exit", "x"], capture_output=True, check=False)
    shutil.rmtree(runtime)


def test_job_monitor_pins_the_host_key_too(hubs, monkeypatch) -> None:
    """The deferrable monitor connects only to the pinned key, and a wrong key is not retried."""
    import asyncio

    from eastwest.airflow.triggers import WestJobTrigger

    trigger = WestJobTrigger("west_guizhou", "no-such-run", "daily_kpis", poll_interval=0.1, lost_after=60)
    event = asyncio.run(trigger.run().__anext__())
    assert event.payload["status"] == "missing"  # the right key connects; the hub has no such job
    with_connection(
        monkeypatch, "west_guizhou", extra={"host_key": hub_connection("west_ningxia")["extra"]["host_key"]}
    )
    started = time.monotonic()
    event = asyncio.run(trigger.run().__anext__())
    assert event.payload["status"] == "error" and "host key does not match" in event.payload["message"]
    assert time.monotonic() - started < 10


def test_connection_without_pinned_key_is_refused(hubs, monkeypatch) -> None:
    with_connection(monkeypatch, "west_guizhou", extra={"host_key": None, "no_host_key_check": True})
    with pytest.raises(HubError, match="does not pin a host key"):
        WestHubHook("west_guizhou")


def test_hub_that_is_down_gives_a_clear_error(hubs, monkeypatch) -> None:
    with_connection(monkeypatch, "west_guizhou", port=22299)
    with pytest.raises(HubError, match="unreachable at 127.0.0.1:22299.*is its sshd running"):
        WestHubHook("west_guizhou", conn_retry_attempts=1).job_status("r1", "daily_kpis")


def test_unregistered_job_is_refused_by_the_hub(installed) -> None:
    with pytest.raises(HubError, match=r"runner exit 2\).*job 'format_disk' is not in the jobs package"):
        WestHubHook("west_guizhou").put_params("r1", "format_disk", {}, installed)
    with pytest.raises(HubError, match=r"runner exit 2\).*job 'format_disk' is not in the jobs package"):
        run_job("west_guizhou", "r1", "format_disk", installed)


def test_shipped_bundle_lets_the_hub_run_a_job(hubs, tmp_path) -> None:
    """Bundle and inputs through the transfer engine, install over SSH, params, run, result back east."""
    from eastwest_dev import telemetry

    hub, run = "west_ningxia", "bundle-run"
    readings = pa.Table.from_batches(list(telemetry.generate_day(date(2026, 9, 1), 6)))
    store = wire.ChunkStore(tmp_path / "east")
    manifest = wire.write_chunks(readings.to_batches(max_chunksize=10_000), telemetry.schema(), store)
    engine = TransferEngine(hub)
    engine.push(run, "readings", store, manifest)
    digest = ship_bundle(hub, run, tmp_path)
    installed_dir = hub_root(hub) / "bundles" / digest
    assert (installed_dir / "jobs" / "daily_kpis.py").read_bytes() == (JOBS / "daily_kpis.py").read_bytes()
    assert not (hub_root(hub) / "opt" / "jobs").exists()  # job code lives only in the bundle

    hook = WestHubHook(hub)
    hook.put_params(run, "daily_kpis", {"enterprise_ids": ["E0001", "E0002", "E0003"]}, digest)
    run_job(hub, run, "daily_kpis", digest)
    result_manifest, _ = engine.pull(run, "daily_kpis", wire.ChunkStore(tmp_path / "result"))
    result = pa.Table.from_batches(list(wire.ChunkStore(tmp_path / "result").batches(result_manifest)))
    assert result.num_rows == 3  # one row per machine of the three enterprises for the local day
    assert sorted(result.column("enterprise_id").to_pylist()) == ["E0001", "E0002", "E0003"]
    assert result.column("readings").to_pylist() == [24 * 60] * 3
    assert hook.job_metrics(run, "daily_kpis")["bundle"] == digest
    hook.cleanup(run)


def test_a_new_job_added_to_a_copy_of_the_jobs_package_runs_with_no_manual_step(hubs, tmp_path) -> None:
    """Write a job module, ship its bundle with the inputs, and the hub runs it: nothing is deployed by hand."""
    jobs_dir = tmp_path / "jobs"
    shutil.copytree(JOBS, jobs_dir)
    (jobs_dir / "peak_power.py").write_text(
        '''"""Peak power and readings per machine at or above a floor."""

import polars as pl

INPUTS = ("readings",)
PARAMS = {"min_power": {"type": "number", "default": 0, "minimum": 0}}


def transform(readings: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    return (
        readings.filter(pl.col("power_kw") >= params["min_power"])
        .group_by("machine_id")
        .agg(pl.len().alias("n"), pl.col("power_kw").max().alias("peak"))
        .sort("machine_id")
    )
'''
    )
    hub, run = "west_guizhou", f"new-job-{time.monotonic_ns()}"
    readings = pa.table(
        {
            "machine_id": ["M1", "M1", "M2", "M2", "M2", "M3"],
            "power_kw": [1.0, 5.0, 2.0, 7.5, 3.0, 0.5],
        }
    )
    store = wire.ChunkStore(tmp_path / "east")
    engine = TransferEngine(hub)
    engine.push(run, "readings", store, wire.write_chunks(readings.to_batches(), readings.schema, store))
    digest = ship_bundle(hub, run, tmp_path, jobs_dir)
    assert digest != bundle.digest_of(bundle.describe(bundle.collect(JOBS)))

    hook = WestHubHook(hub)
    with pytest.raises(HubError, match=r"runner exit 2\).*parameter min_power of job peak_power must be at least 0"):
        hook.put_params(run, "peak_power", {"min_power": -1}, digest)
    hook.put_params(run, "peak_power", {"min_power": 1.0}, digest)
    listed = json.loads(hook.call([protocol.JOBS, "--bundle", digest]))
    assert listed == sorted([*PROJECT_JOBS, "peak_power"])
    hook.call([protocol.RUN, run, "peak_power", "--bundle", digest])
    back = wire.ChunkStore(tmp_path / "back")
    manifest, metrics = engine.pull(run, "peak_power", back)
    assert manifest.rows == metrics.rows == 2
    assert pa.Table.from_batches(list(back.batches(manifest))).to_pylist() == [
        {"machine_id": "M1", "n": 2, "peak": 5.0},
        {"machine_id": "M2", "n": 3, "peak": 7.5},
    ]
    # the project's own bundle on the same hub knows nothing of the new job
    with pytest.raises(HubError, match="job 'peak_power' is not in the jobs package"):
        hook.put_params(run, "peak_power", {}, ship_bundle(hub, run, tmp_path))


def test_bundle_tampered_with_on_the_hub_is_refused(hubs, tmp_path) -> None:
    hub, run = "west_guizhou", f"tampered-{time.monotonic_ns()}"
    digest = ship_bundle(hub, run, tmp_path, unique_jobs_copy(tmp_path))
    job = hub_root(hub) / "bundles" / digest / "jobs" / "daily_kpis.py"
    job.write_text(job.read_text().replace("threshold = float(", "threshold = 0 * float("))
    hook = WestHubHook(hub)
    refused = rf"runner exit 3\).*bundle {digest[:12]} on this hub was modified after it was installed"
    with pytest.raises(HubError, match=refused):
        run_job(hub, run, "daily_kpis", digest)
    with pytest.raises(HubError, match=refused):
        hook.put_params(run, "daily_kpis", {}, digest)
    assert not (hub_root(hub) / "scratch" / run / "daily_kpis.params.json").exists()
    assert "0 * float(" in job.read_text()  # refusing is all the runner does; it repairs nothing by itself

    hook.install_bundle(run, digest)  # the east's next ship installs the verified copy again
    assert "0 * float(" not in job.read_text()
    hook.put_params(run, "daily_kpis", {}, digest)
    hook.cleanup(run)


def test_install_bundle_with_a_digest_that_does_not_match_is_refused(hubs, tmp_path) -> None:
    hub, run = "west_ningxia", f"wrong-digest-{time.monotonic_ns()}"
    real = ship_bundle(hub, run, tmp_path, unique_jobs_copy(tmp_path), install=False)
    announced = bundle.digest_of({"jobs/daily_kpis.py": "0" * 64})
    with pytest.raises(HubError, match=rf"runner exit 3\).*content hashes to {real[:12]}, not the announced"):
        WestHubHook(hub).install_bundle(run, announced)
    bundles = hub_root(hub) / "bundles"
    assert not (bundles / announced).exists() and not (bundles / real).exists()
    assert not [p for p in bundles.iterdir() if p.name.endswith(".partial")]
    with pytest.raises(HubError, match=r"runner exit 4\).*is not installed on this hub; ship it first"):
        WestHubHook(hub).put_params(run, "daily_kpis", {}, announced)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"z_threshold": 3.5, "cmd": "id"}, "job daily_kpis does not take parameter(s) cmd"),
        ({"z_threshold": "3.5"}, "parameter z_threshold of job daily_kpis must be a number"),
        ({"z_threshold": float("nan")}, "parameter z_threshold of job daily_kpis must be a finite number"),
        ({"tz": "../../etc/passwd"}, "parameter tz of job daily_kpis '../../etc/passwd' is not a time zone"),
    ],
)
def test_params_violating_the_schema_are_refused_by_the_hub(installed, params, message) -> None:
    with pytest.raises(HubError) as refused:
        WestHubHook("west_guizhou").put_params("schema-check", "daily_kpis", params, installed)
    text = str(refused.value)
    assert "(runner exit 2)" in text and message in text
    assert "Traceback" not in text
    stderr = text.split("(runner exit 2): ", 1)[1]
    assert stderr.count("\n") == 0 and stderr.startswith("[eastwest.west] error: ")
    assert not (hub_root("west_guizhou") / "scratch" / "schema-check" / "daily_kpis.params.json").exists()


def test_malformed_put_frame_header_is_refused_over_ssh(hubs) -> None:
    hook = WestHubHook("west_ningxia")
    with pytest.raises(HubError) as refused:
        hook.call([protocol.PUT], stdin=b"../../etc/passwd 4096\n" + b"x" * 64 + protocol.END)
    assert "(runner exit 2)" in str(refused.value) and "malformed chunk header" in str(refused.value)
    assert "Traceback" not in str(refused.value)


def test_failing_job_fails_the_task_with_its_stderr(hubs, airflow_db, capfd) -> None:
    dag = load_dag(ROOT / "tests" / "dags" / "test_west_job_failure.py")
    run = dag.test()
    out = capfd.readouterr()
    log = out.out + out.err
    assert str(run.state) in ("failed", "DagRunState.FAILED")
    assert "failed: the job exited with code 4" in log
    assert (
        "input readings is not on this hub for run test_west_job_failure.nothing-shipped.20261124-20261125; "
        "ship it first" in log
    )
