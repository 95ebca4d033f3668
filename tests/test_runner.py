"""The western runner as a program: it refuses unknown jobs, unsafe names and unverified data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import ROOT, WEST_PYTHON
from westnode import wire


def runner(root: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(WEST_PYTHON), str(ROOT / "include" / "westnode" / "runner.py"), "--root", str(root), *args],
        input=stdin,
        capture_output=True,
    )


def chunked(tmp_path: Path, rows: int = 100_000) -> tuple[wire.ChunkStore, wire.DatasetManifest]:
    t = pa.table({"x": list(range(rows)), "y": [float(i) for i in range(rows)]})
    store = wire.ChunkStore(tmp_path / "east")
    return store, wire.write_chunks(t.to_batches(max_chunksize=10_000), t.schema, store, target_raw_bytes=256 << 10)


def frames(store: wire.ChunkStore, chunks, corrupt: str = "") -> bytes:
    out = b""
    for c in chunks:
        data = store.path(c.sha256).read_bytes()
        if c.sha256 == corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        out += wire.frame_header(c.sha256, len(data)) + data
    return out + wire.END


def ship(root: Path, store: wire.ChunkStore, manifest: wire.DatasetManifest, run: str = "r1") -> None:
    assert runner(root, "put", stdin=frames(store, manifest.chunks)).returncode == 0
    result = runner(root, "commit", run, "readings", stdin=manifest.to_json().encode())
    assert result.returncode == 0, result.stderr


def test_runs_only_with_west_dependencies() -> None:
    """The hub's environment has the runner's needs and no Airflow."""
    probe = subprocess.run([str(WEST_PYTHON), "-c", "import airflow"], capture_output=True)
    assert probe.returncode != 0


def test_lists_registered_jobs(tmp_path) -> None:
    result = runner(tmp_path, "jobs")
    assert result.returncode == 0
    assert json.loads(result.stdout) == ["daily_kpis"]


def test_unknown_job_is_refused(tmp_path) -> None:
    result = runner(tmp_path, "run", "r1", "not_a_job")
    assert result.returncode == 2
    assert b"job 'not_a_job' is not registered" in result.stderr


@pytest.mark.parametrize("bad", ["../etc", "a b", "x;touch /tmp/canary", "$(id)", "-rf", ""])
def test_unsafe_names_are_refused_before_anything_runs(tmp_path, bad) -> None:
    result = runner(tmp_path, "cleanup", bad)
    assert result.returncode == 2
    assert b"error" in result.stderr
    assert not (tmp_path / "scratch").exists()


def test_put_verifies_each_chunk_and_have_lists_only_intact_ones(tmp_path) -> None:
    store, manifest = chunked(tmp_path)
    bad = manifest.chunks[1].sha256
    result = runner(tmp_path / "hub", "put", stdin=frames(store, manifest.chunks, corrupt=bad))
    assert result.returncode == 0, result.stderr
    replies = {r["sha256"]: r["ok"] for r in map(json.loads, result.stdout.splitlines())}
    assert replies == {c.sha256: c.sha256 != bad for c in manifest.chunks}
    have = runner(tmp_path / "hub", "have", stdin=json.dumps([c.sha256 for c in manifest.chunks]).encode())
    assert set(json.loads(have.stdout)) == {c.sha256 for c in manifest.chunks} - {bad}


def test_commit_refuses_a_dataset_with_missing_chunks(tmp_path) -> None:
    store, manifest = chunked(tmp_path)
    runner(tmp_path / "hub", "put", stdin=frames(store, manifest.chunks[:-1]))
    result = runner(tmp_path / "hub", "commit", "r1", "readings", stdin=manifest.to_json().encode())
    assert result.returncode == 3
    assert b"missing or damaged" in result.stderr
    assert not (tmp_path / "hub" / "scratch" / "r1" / "readings.dataset.json").exists()


def test_commit_then_get_returns_the_same_bytes(tmp_path) -> None:
    store, manifest = chunked(tmp_path)
    ship(tmp_path / "hub", store, manifest)
    listed = runner(tmp_path / "hub", "manifest", "r1", "readings")
    assert wire.DatasetManifest.from_json(listed.stdout) == manifest
    got = runner(tmp_path / "hub", "get", stdin=json.dumps([c.sha256 for c in manifest.chunks]).encode() + b"\n")
    assert got.returncode == 0
    assert got.stdout == frames(store, manifest.chunks)


def test_stored_chunk_damaged_on_disk_is_reported_missing(tmp_path) -> None:
    store, manifest = chunked(tmp_path)
    ship(tmp_path / "hub", store, manifest)
    hub_store = wire.ChunkStore(tmp_path / "hub" / "chunks")
    victim = hub_store.path(manifest.chunks[0].sha256)
    victim.write_bytes(victim.read_bytes()[:-5] + b"xxxxx")
    have = runner(tmp_path / "hub", "have", stdin=json.dumps([c.sha256 for c in manifest.chunks]).encode())
    assert manifest.chunks[0].sha256 not in json.loads(have.stdout)
    assert not victim.exists()


def test_params_must_be_declared_by_the_job(tmp_path) -> None:
    result = runner(tmp_path, "params", "r1", "daily_kpis", stdin=b'{"shell": "rm -rf /"}')
    assert result.returncode == 2
    assert b"does not take parameter(s) shell" in result.stderr
    wrong_type = runner(tmp_path, "params", "r1", "daily_kpis", stdin=b'{"z_threshold": "3; rm -rf /"}')
    assert wrong_type.returncode == 2
    assert b"parameter z_threshold of job daily_kpis must be float" in wrong_type.stderr
    bad_ids = runner(tmp_path, "params", "r1", "daily_kpis", stdin=b'{"enterprise_ids": ["E0001", "$(id)"]}')
    assert bad_ids.returncode == 2
    ok = runner(tmp_path, "params", "r1", "daily_kpis", stdin=b'{"tz": "UTC"}')
    assert ok.returncode == 0
    assert json.loads((tmp_path / "scratch" / "r1" / "daily_kpis.params.json").read_text()) == {"tz": "UTC"}


def test_run_without_input_says_to_ship_first(tmp_path) -> None:
    result = runner(tmp_path, "run", "r1", "daily_kpis")
    assert result.returncode == 4
    assert b"ship it first" in result.stderr


def test_input_corrupted_on_disk_is_not_read(tmp_path) -> None:
    store, manifest = chunked(tmp_path)
    ship(tmp_path / "hub", store, manifest)
    victim = wire.ChunkStore(tmp_path / "hub" / "chunks").path(manifest.chunks[-1].sha256)
    damaged = bytearray(victim.read_bytes())
    damaged[-50] ^= 0xFF
    victim.write_bytes(bytes(damaged))
    result = runner(tmp_path / "hub", "run", "r1", "daily_kpis")
    assert result.returncode == 3
    assert b"input readings failed verification on disk" in result.stderr


def test_cleanup_keeps_recent_chunks_and_collects_old_unreferenced_ones(tmp_path) -> None:
    import os
    import time

    store, manifest = chunked(tmp_path)
    ship(tmp_path / "hub", store, manifest)
    hub = tmp_path / "hub"
    assert runner(hub, "cleanup", "r1").returncode == 0
    assert not (hub / "scratch" / "r1").exists()
    chunk_files = list((hub / "chunks").rglob("*.arrows"))
    assert len(chunk_files) == len(manifest.chunks)  # recent: kept so a rerun sends nothing
    old = time.time() - 48 * 3600
    for path in chunk_files:
        os.utime(path, (old, old))
    assert runner(hub, "cleanup", "r1", "--keep-hours", "24").returncode == 0
    assert list((hub / "chunks").rglob("*.arrows")) == []
