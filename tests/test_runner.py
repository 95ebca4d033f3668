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


def stream_bytes(rows: int = 100) -> tuple[bytes, wire.Manifest]:
    import io

    t = pa.table({"x": list(range(rows))})
    buf = io.BytesIO()
    manifest = wire.write_stream(t.to_batches(), t.schema, buf)
    return buf.getvalue(), manifest


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


def test_receive_verifies_and_reports_manifest(tmp_path) -> None:
    data, manifest = stream_bytes()
    result = runner(
        tmp_path, "receive", "r1", "readings", manifest.sha256, str(manifest.bytes), str(manifest.rows), stdin=data
    )
    assert result.returncode == 0, result.stderr
    assert wire.Manifest.from_dict(json.loads(result.stdout)) == manifest
    assert (tmp_path / "scratch" / "r1" / "readings.arrows").read_bytes() == data


def test_receive_with_wrong_digest_keeps_nothing(tmp_path) -> None:
    data, manifest = stream_bytes()
    result = runner(
        tmp_path, "receive", "r1", "readings", "0" * 64, str(manifest.bytes), str(manifest.rows), stdin=data
    )
    assert result.returncode == 3
    assert b"sha256" in result.stderr
    assert list((tmp_path / "scratch" / "r1").iterdir()) == []


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
    data, manifest = stream_bytes()
    runner(tmp_path, "receive", "r1", "readings", manifest.sha256, str(manifest.bytes), str(manifest.rows), stdin=data)
    stored = tmp_path / "scratch" / "r1" / "readings.arrows"
    damaged = bytearray(stored.read_bytes())
    damaged[-50] ^= 0xFF
    stored.write_bytes(bytes(damaged))
    result = runner(tmp_path, "run", "r1", "daily_kpis")
    assert result.returncode == 3
    assert b"input readings.arrows failed verification on disk" in result.stderr
