"""The transfer engine against real sshd hubs: resume, dedup, verification, rate cap on a shaped link."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from conftest import ROOT, TEST_HOME, WEST_PYTHON
from eastwest.hub.hook import HubError, WestHubHook
from eastwest.hub.transfer import TransferEngine, plan_streams, recent_metrics
from eastwest.west import bundle, protocol, wire
from eastwest_dev import telemetry

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 24)


def readings(
    tmp_path, machines: int = 40, target: int = 512 << 10, day: date = DAY
) -> tuple[wire.ChunkStore, wire.DatasetManifest]:
    """A day of telemetry as chunks of about ``target`` raw bytes (10k-row batches).

    Hubs keep chunks across runs, so each test uses its own day: its data is new to the hub.
    """
    import pyarrow as pa

    store = wire.ChunkStore(tmp_path / "east")
    table = pa.Table.from_batches(list(telemetry.generate_day(day, machines)))
    return store, wire.write_chunks(table.to_batches(max_chunksize=10_000), telemetry.schema(), store, target)


def on_wire(chunks) -> int:
    """Bytes a transfer of these chunks puts on the wire: each chunk's frame header and bytes."""
    return sum(c.bytes + len(protocol.frame_header(c.sha256, c.bytes)) for c in chunks)


def ship_bundle(engine: TransferEngine, run: str, tmp_path) -> str:
    """Ship the project's job bundle for ``run`` and install it on the engine's hub; return its digest."""
    files = bundle.collect(ROOT / "include" / "jobs")
    table = bundle.to_table(files)
    store = wire.ChunkStore(tmp_path / "east-bundle")
    manifest = wire.write_chunks(table.to_batches(), table.schema, store, target_raw_bytes=64 << 20)
    engine.push(run, protocol.BUNDLE_DATASET, store, manifest)
    digest = bundle.digest_of(bundle.describe(files))
    WestHubHook(engine.hub).install_bundle(run, digest)
    return digest


def hub_store(hub: str) -> wire.ChunkStore:
    return wire.ChunkStore(TEST_HOME / "hubs" / hub / "root" / "chunks")


def fetch_back(engine: TransferEngine, run: str, tmp_path) -> tuple[wire.ChunkStore, wire.DatasetManifest]:
    back = wire.ChunkStore(tmp_path / f"back-{time.monotonic_ns()}")
    manifest, _ = engine.pull(run, "readings", back)
    return back, manifest


def same_bytes(a: wire.ChunkStore, b: wire.ChunkStore, manifest: wire.DatasetManifest) -> bool:
    return all(a.path(c.sha256).read_bytes() == b.path(c.sha256).read_bytes() for c in manifest.chunks)


def test_streams_follow_the_bandwidth_delay_product() -> None:
    assert plan_streams({}) == 4
    assert plan_streams({"eastwest_streams": 3}) == 3
    assert plan_streams({"eastwest_link_mbps": 200, "eastwest_rtt_ms": 30}) == 4  # BDP 0.75 MB
    assert plan_streams({"eastwest_link_mbps": 1000, "eastwest_rtt_ms": 40}) == 5  # BDP 5 MB
    assert plan_streams({"eastwest_link_mbps": 10000, "eastwest_rtt_ms": 80}) == 16


def test_shipping_identical_data_twice_sends_nothing(hubs, tmp_path) -> None:
    store, manifest = readings(tmp_path)
    engine = TransferEngine("west_guizhou")
    first = engine.push("twice-1", "readings", store, manifest)
    assert first.wire_bytes == on_wire(manifest.chunks) and first.chunks_skipped == 0
    second = engine.push("twice-2", "readings", store, manifest)  # another run, same data
    assert second.wire_bytes == 0
    assert second.chunks_skipped == len(manifest.chunks)
    assert (TEST_HOME / "hubs" / "west_guizhou" / "root" / "scratch" / "twice-2" / "readings.dataset.json").exists()
    saved = recent_metrics("west_guizhou")
    assert saved[0]["run_key"] == "twice-2" and saved[0]["wire_bytes"] == 0


def serving(hub_root: Path, command: str) -> list[int]:
    """The hub-side processes of the forced command answering ``command`` (the east's request)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"eastwest.west.serve" in argv and str(hub_root).encode() in argv:
            if f"SSH_ORIGINAL_COMMAND={command}".encode() in env:
                pids.append(int(proc.name))
    return pids


def test_interrupted_transfer_resumes_with_only_the_missing_chunks(hubs, tmp_path) -> None:
    store, manifest = readings(tmp_path, machines=200, day=date(2026, 10, 2))
    assert len(manifest.chunks) >= 8
    hub_root = TEST_HOME / "hubs" / "west_ningxia" / "root"
    slow = TransferEngine("west_ningxia", streams=2, rate_limit_mbps=8, max_rounds=1)  # ~1 MB/s

    def cut_the_streams() -> None:  # kill the hub-side processes serving the transfer, mid-way
        time.sleep(1.0)
        for pid in serving(hub_root, protocol.PUT):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    killer = threading.Thread(target=cut_the_streams)
    killer.start()
    with pytest.raises(HubError, match="a retry resumes with only the missing chunks"):
        slow.push("resume", "readings", store, manifest)
    killer.join()
    already = [c for c in manifest.chunks if hub_store("west_ningxia").verify(c.sha256)]
    assert 0 < len(already) < len(manifest.chunks)
    assert not list(hub_root.rglob("*.partial"))  # the interrupted chunks left nothing behind

    retry = TransferEngine("west_ningxia").push("resume", "readings", store, manifest)
    assert retry.chunks_skipped == len(already)
    assert retry.wire_bytes == on_wire(c for c in manifest.chunks if c not in already)
    back, got = fetch_back(TransferEngine("west_ningxia"), "resume", tmp_path)
    assert got == manifest and same_bytes(store, back, manifest)


def test_chunk_damaged_in_transit_is_detected_and_resent(hubs, tmp_path, monkeypatch) -> None:
    store, manifest = readings(tmp_path, day=date(2026, 10, 3))
    victim = manifest.chunks[2].sha256
    damaged_once = threading.Event()
    original = TransferEngine._payload

    def flaky_payload(f, chunk, size):
        piece = original(f, chunk, size)
        if chunk.sha256 == victim and piece and not damaged_once.is_set():
            damaged_once.set()
            return bytes([piece[0] ^ 0xFF]) + piece[1:]
        return piece

    monkeypatch.setattr(TransferEngine, "_payload", staticmethod(flaky_payload))
    metrics = TransferEngine("west_guizhou").push("transit", "readings", store, manifest)
    assert damaged_once.is_set()
    assert metrics.chunks_resent == 1
    assert metrics.wire_bytes == on_wire(manifest.chunks) + on_wire([manifest.chunks[2]])
    assert hub_store("west_guizhou").verify(victim, rows=True).rows == manifest.chunks[2].rows


def test_chunk_corrupted_on_the_hub_is_resent_before_the_job_reads_it(hubs, tmp_path) -> None:
    store, manifest = readings(tmp_path, day=date(2026, 10, 4))
    engine = TransferEngine("west_guizhou")
    digest = ship_bundle(engine, "corrupt", tmp_path)
    engine.push("corrupt", "readings", store, manifest)
    victim = hub_store("west_guizhou").path(manifest.chunks[0].sha256)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    hook = WestHubHook("west_guizhou")
    with pytest.raises(HubError, match="failed verification on disk"):
        hook.call(["run", "corrupt", "daily_kpis", "--bundle", digest])  # the job refuses to read it

    again = engine.push("corrupt", "readings", store, manifest)  # the task's retry
    assert again.chunks_skipped == len(manifest.chunks) - 1
    assert again.wire_bytes == on_wire([manifest.chunks[0]])
    hook.put_params("corrupt", "daily_kpis", {}, digest)
    hook.call(["run", "corrupt", "daily_kpis", "--bundle", digest])
    result, _ = engine.pull("corrupt", "daily_kpis", wire.ChunkStore(tmp_path / "result"))
    assert result.rows == 40  # one row per machine for the (Asia/Shanghai) day


@pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root for netns"
)
def test_rate_cap_holds_within_10_percent_on_a_shaped_link(tmp_path, monkeypatch) -> None:
    from eastwest_dev.wanlab import WanLink

    store, manifest = readings(tmp_path, machines=2400, day=date(2026, 10, 5))  # ~15 MB on the wire
    with WanLink(
        "captest", index=7, state_dir=TEST_HOME / "wan", west_python=str(WEST_PYTHON), rate_mbit=200, rtt_ms=20
    ) as link:
        monkeypatch.setenv("AIRFLOW_CONN_CAPTEST", json.dumps(link.connection))
        monkeypatch.setenv("EASTWEST_HUBS", "captest")
        metrics = TransferEngine("captest", rate_limit_mbps=40).push("cap", "readings", store, manifest)
    assert metrics.wire_bytes == on_wire(manifest.chunks)
    assert metrics.send_seconds > 2, metrics.to_dict()
    cap = 40e6 / 8 / 1e6  # MB/s
    assert abs(metrics.link_mb_per_s - cap) / cap < 0.10, metrics.to_dict()
    # The samples the report's throughput chart draws show the same flow.
    samples = metrics.samples
    assert samples[0] == [0.0, 0] and samples[-1][1] == metrics.wire_bytes
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(samples, samples[1:], strict=False))
    assert len(samples) >= 8  # one every 0.25 s or so over more than 2 s
    rates = sorted(
        (b[1] - a[1]) / 1e6 / (b[0] - a[0]) for a, b in zip(samples, samples[1:], strict=False) if b[0] > a[0]
    )
    assert abs(rates[len(rates) // 2] - cap) / cap < 0.25, rates


@pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root for netns"
)
def test_cut_link_mid_transfer_then_retry_sends_only_missing_chunks(tmp_path, monkeypatch) -> None:
    from eastwest_dev.wanlab import WanLink

    store, manifest = readings(tmp_path, machines=800, day=date(2026, 10, 6))  # ~5 MB: 2.5 s at the cap
    with WanLink(
        "cuttest", index=8, state_dir=TEST_HOME / "wan", west_python=str(WEST_PYTHON), rate_mbit=100, rtt_ms=10
    ) as link:
        monkeypatch.setenv("AIRFLOW_CONN_CUTTEST", json.dumps(link.connection))
        monkeypatch.setenv("EASTWEST_HUBS", "cuttest")
        hub_chunks = wire.ChunkStore(link.hub.root / "chunks")

        def cut() -> None:  # once the first chunks have landed (not after a fixed time: a busy machine starts slower)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(hub_chunks.path(c.sha256).exists() for c in manifest.chunks):
                time.sleep(0.02)
            time.sleep(0.2)
            link.cut()

        cutter = threading.Thread(target=cut)
        cutter.start()
        slow = TransferEngine("cuttest", rate_limit_mbps=16, max_rounds=1, idle_timeout=3)
        with pytest.raises(HubError):
            slow.push("cut", "readings", store, manifest)
        cutter.join()
        link.restore()

        def landed() -> list:
            return [c for c in manifest.chunks if hub_chunks.verify(c.sha256)]

        # Bytes that were on the way when the link went down land once it is back; wait for that
        # to settle (the hub's count stops changing) before asking what a retry should skip.
        already, settled = landed(), time.monotonic()
        while time.monotonic() - settled < 1.5:
            time.sleep(0.25)
            now = landed()
            if now != already:
                already, settled = now, time.monotonic()
        assert 0 < len(already) < len(manifest.chunks)
        retry = TransferEngine("cuttest").push("cut", "readings", store, manifest)
        assert retry.chunks_skipped == len(already)
        assert retry.wire_bytes == on_wire(c for c in manifest.chunks if c not in already)
        back, got = fetch_back(TransferEngine("cuttest"), "cut", tmp_path)
        assert got == manifest and same_bytes(store, back, manifest)


def test_wan_link_is_torn_down(tmp_path) -> None:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "ew-captest" not in out and "ew-cuttest" not in out
