"""The western runner as a program: it refuses unknown jobs, unsafe names, unverified data and bundles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import PROJECT_JOBS, ROOT, WEST_PYTHON
from eastwest.west import bundle, protocol, wire

JOBS = ROOT / "include" / "jobs"


def runner(root: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """The runner as a hub runs it: ``python -B -m eastwest.west.runner`` with only the west package on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [str(WEST_PYTHON), "-B", "-m", "eastwest.west.runner", "--root", str(root), *args],
        input=stdin,
        capture_output=True,
        env=env,
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
        out += protocol.frame_header(c.sha256, len(data)) + data
    return out + protocol.END


def ship(
    root: Path, store: wire.ChunkStore, manifest: wire.DatasetManifest, run: str = "r1", name: str = "readings"
) -> None:
    put = runner(root, "put", stdin=frames(store, manifest.chunks))
    assert put.returncode == 0, put.stderr
    result = runner(root, "commit", run, name, stdin=manifest.to_json().encode())
    assert result.returncode == 0, result.stderr


def bundle_dataset(files: dict[str, bytes], store: wire.ChunkStore) -> tuple[str, wire.DatasetManifest]:
    """A bundle as the east ships it (``TransferEngine.push_bundle``): its digest and its dataset."""
    table = bundle.to_table(files)
    manifest = wire.write_chunks(table.to_batches(), table.schema, store, target_raw_bytes=64 << 20)
    return bundle.digest_of(bundle.describe(files)), manifest


def install(root: Path, tmp_path: Path, jobs_dir: Path = JOBS, run: str = "r1") -> str:
    """Ship a jobs package's bundle to the hub at ``root`` as run ``run``'s bundle dataset and install it."""
    store = wire.ChunkStore(tmp_path / "east-bundle")
    digest, manifest = bundle_dataset(bundle.collect(jobs_dir), store)
    ship(root, store, manifest, run, protocol.BUNDLE_DATASET)
    result = runner(root, "install-bundle", run, protocol.BUNDLE_DATASET, "--digest", digest)
    assert result.returncode == 0, result.stderr
    return digest


def telemetry_day(tmp_path: Path, machines: int = 12) -> tuple[wire.ChunkStore, wire.DatasetManifest]:
    from eastwest_dev import telemetry

    store = wire.ChunkStore(tmp_path / "east-readings")
    table = pa.Table.from_batches(list(telemetry.generate_day(date(2026, 11, 24), machines)))
    return store, wire.write_chunks(table.to_batches(max_chunksize=10_000), telemetry.schema(), store)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The runner's stderr, which must be exactly one ``error`` line and no traceback."""
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("[eastwest.west] error: "), err
    return lines[0]


def test_runs_only_with_west_dependencies() -> None:
    """The hub's environment has the runner's needs and no Airflow."""
    probe = subprocess.run([str(WEST_PYTHON), "-c", "import airflow"], capture_output=True)
    assert probe.returncode != 0


def test_lists_the_jobs_of_an_installed_bundle(tmp_path) -> None:
    digest = install(tmp_path / "hub", tmp_path)
    result = runner(tmp_path / "hub", "jobs", "--bundle", digest)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == PROJECT_JOBS
    missing = runner(tmp_path / "hub", "jobs", "--bundle", "0" * 64)
    assert missing.returncode == protocol.EXIT_MISSING
    assert b"is not installed on this hub; ship it first" in missing.stderr


def test_unknown_job_is_refused(tmp_path) -> None:
    digest = install(tmp_path / "hub", tmp_path)
    result = runner(tmp_path / "hub", "run", "r1", "not_a_job", "--bundle", digest)
    assert result.returncode == protocol.EXIT_USAGE
    assert b"job 'not_a_job' is not in the jobs package" in result.stderr
    params = runner(tmp_path / "hub", "params", "r1", "not_a_job", "--bundle", digest, stdin=b"{}")
    assert params.returncode == protocol.EXIT_USAGE
    assert b"job 'not_a_job' is not in the jobs package" in params.stderr
    assert not (tmp_path / "hub" / "scratch" / "r1" / "not_a_job.params.json").exists()


@pytest.mark.parametrize("bad", ["../etc", "a b", "x;touch /tmp/canary", "$(id)", "-rf", ""])
def test_unsafe_names_are_refused_before_anything_runs(tmp_path, bad) -> None:
    result = runner(tmp_path, "cleanup", bad)
    assert result.returncode == 2
    assert b"error" in result.stderr
    assert not (tmp_path / "scratch").exists()
    digest = runner(tmp_path, "run", "r1", "daily_kpis", f"--bundle={bad}")
    assert digest.returncode == 2 and b"is not a SHA-256 digest" in digest.stderr


def test_put_verifies_each_chunk_and_have_lists_only_intact_ones(tmp_path) -> None:
    store, manifest = chunked(tmp_path)
    bad = manifest.chunks[1].sha256
    result = runner(tmp_path / "hub", "put", stdin=frames(store, manifest.chunks, corrupt=bad))
    assert result.returncode == 0, result.stderr
    replies = {r["sha256"]: r["ok"] for r in map(json.loads, result.stdout.splitlines())}
    assert replies == {c.sha256: c.sha256 != bad for c in manifest.chunks}
    have = runner(tmp_path / "hub", "have", stdin=json.dumps([c.sha256 for c in manifest.chunks]).encode())
    assert set(json.loads(have.stdout)) == {c.sha256 for c in manifest.chunks} - {bad}


@pytest.mark.parametrize(
    "header",
    [
        b"../../etc/passwd 12\n",
        b"hello\n",
        b"\xff\xfe\xfd 12\n",
        b"ab" * 32 + b" -5\n",
        b"AB" * 32 + b" 5\n",
        b"ab" * 32 + b" 5 extra\n",
        b"ab" * 32 + b" 0x10\n",
        b"ab" * 200,  # no newline within the header's length limit
    ],
)
def test_malformed_put_frame_header_is_a_usage_error_without_traceback(tmp_path, header) -> None:
    store, manifest = chunked(tmp_path, rows=1000)
    good = frames(store, manifest.chunks)[: -len(protocol.END)]
    result = runner(tmp_path / "hub", "put", stdin=good + header + b"x" * 16 + protocol.END)
    assert result.returncode == protocol.EXIT_USAGE, result.stderr
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    assert "error: malformed chunk header" in err
    # the chunks before the bad header were stored and answered; nothing partial is left behind
    assert [json.loads(line)["ok"] for line in result.stdout.splitlines()] == [True] * len(manifest.chunks)
    assert not [p for p in (tmp_path / "hub").rglob("*") if ".partial" in p.name]


def test_commit_refuses_a_dataset_with_missing_chunks(tmp_path) -> None:
    store, manifest = chunked(tmp_path)
    runner(tmp_path / "hub", "put", stdin=frames(store, manifest.chunks[:-1]))
    result = runner(tmp_path / "hub", "commit", "r1", "readings", stdin=manifest.to_json().encode())
    assert result.returncode == 3
    assert b"missing or damaged" in result.stderr
    assert not (tmp_path / "hub" / "scratch" / "r1" / "readings.dataset.json").exists()


@pytest.mark.parametrize(
    "body",
    [
        b"[",
        b"{}",
        b'{"chunks": [{"sha256": "ab", "bytes": "x", "rows": 1}]}',
        b"5",
        b'{"chunks": "x"}',
        b"[" * 100_000,
    ],
)
def test_commit_refuses_a_malformed_manifest_without_traceback(tmp_path, body) -> None:
    result = runner(tmp_path / "hub", "commit", "r1", "readings", stdin=body)
    assert result.returncode == protocol.EXIT_VERIFY
    assert "dataset readings failed verification" in one_error_line(result)
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
    hub = tmp_path / "hub"
    digest = install(hub, tmp_path)

    def params(body: bytes) -> subprocess.CompletedProcess:
        return runner(hub, "params", "r1", "daily_kpis", "--bundle", digest, stdin=body)

    result = params(b'{"shell": "rm -rf /"}')
    assert result.returncode == 2
    assert b"does not take parameter(s) shell" in result.stderr
    wrong_type = params(b'{"z_threshold": "3; rm -rf /"}')
    assert wrong_type.returncode == 2
    assert b"parameter z_threshold of job daily_kpis must be a number" in wrong_type.stderr
    bad_ids = params(b'{"enterprise_ids": ["E0001", "$(id)"]}')
    assert bad_ids.returncode == 2
    assert b"parameter enterprise_ids of job daily_kpis value '$(id)' does not match" in bad_ids.stderr
    assert not (hub / "scratch" / "r1" / "daily_kpis.params.json").exists()
    ok = params(b'{"tz": "UTC", "enterprise_ids": ["E0002", "E0001", "E0002"]}')
    assert ok.returncode == 0, ok.stderr
    assert json.loads((hub / "scratch" / "r1" / "daily_kpis.params.json").read_text()) == {
        "tz": "UTC",
        "z_threshold": 3.5,  # defaults filled in, lists de-duplicated and sorted
        "enterprise_ids": ["E0001", "E0002"],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"tz": "UTC", "rm": "-rf"}', "job daily_kpis does not take parameter(s) rm; it takes:"),
        (b'{"z_threshold": "3.5"}', "parameter z_threshold of job daily_kpis must be a number"),
        (b'{"z_threshold": true}', "parameter z_threshold of job daily_kpis must be a number"),
        (b'{"enterprise_ids": "E0001"}', "parameter enterprise_ids of job daily_kpis must be a list"),
        (b'{"z_threshold": NaN}', "parameter z_threshold of job daily_kpis must be a finite number"),
        (b'{"z_threshold": Infinity}', "parameter z_threshold of job daily_kpis must be a finite number"),
        (b'{"z_threshold": 0.1}', "parameter z_threshold of job daily_kpis must be at least 0.5"),
        (b'{"tz": "../../etc/passwd"}', "parameter tz of job daily_kpis '../../etc/passwd' is not a time zone"),
        (b'{"tz": "' + b"A" * 300 + b'"}', "parameter tz of job daily_kpis is longer than 256 characters"),
        (b'["tz", "UTC"]', "parameters for job daily_kpis must be an object"),
        (b'{"tz": ', "parameters for daily_kpis are not valid JSON"),
        (b'{"tz": "\xff\xfe"}', "parameters for daily_kpis are not valid JSON"),
        (b"[" * 100_000, "parameters for daily_kpis are not valid JSON"),
    ],
)
def test_params_violating_the_schema_are_refused_with_one_clear_line(tmp_path, body, message) -> None:
    hub = tmp_path / "hub"
    digest = install(hub, tmp_path)
    result = runner(hub, "params", "r1", "daily_kpis", "--bundle", digest, stdin=body)
    assert result.returncode == protocol.EXIT_USAGE
    assert message in one_error_line(result)
    assert not (hub / "scratch" / "r1" / "daily_kpis.params.json").exists()


def test_run_without_input_says_to_ship_first(tmp_path) -> None:
    digest = install(tmp_path / "hub", tmp_path)
    result = runner(tmp_path / "hub", "run", "r1", "daily_kpis", "--bundle", digest)
    assert result.returncode == 4
    assert b"input readings is not on this hub for run r1; ship it first" in result.stderr


def test_run_without_the_bundle_says_to_ship_first(tmp_path) -> None:
    result = runner(tmp_path, "run", "r1", "daily_kpis", "--bundle", "ab" * 32)
    assert result.returncode == 4
    assert b"bundle abababababab is not installed on this hub; ship it first" in result.stderr


def test_input_corrupted_on_disk_is_not_read(tmp_path) -> None:
    hub = tmp_path / "hub"
    digest = install(hub, tmp_path)
    store, manifest = telemetry_day(tmp_path)
    ship(hub, store, manifest)
    victim = wire.ChunkStore(hub / "chunks").path(manifest.chunks[-1].sha256)
    damaged = bytearray(victim.read_bytes())
    damaged[-50] ^= 0xFF
    victim.write_bytes(bytes(damaged))
    result = runner(hub, "run", "r1", "daily_kpis", "--bundle", digest)
    assert result.returncode == 3
    assert b"input readings failed verification on disk" in result.stderr


def test_job_of_an_installed_bundle_runs_and_its_result_comes_back(tmp_path) -> None:
    hub = tmp_path / "hub"
    digest = install(hub, tmp_path)
    assert (hub / "bundles" / digest / "jobs" / "daily_kpis.py").read_bytes() == (JOBS / "daily_kpis.py").read_bytes()
    store, manifest = telemetry_day(tmp_path, machines=12)
    ship(hub, store, manifest)
    assert runner(hub, "params", "r1", "daily_kpis", "--bundle", digest, stdin=b'{"tz": "UTC"}').returncode == 0
    result = runner(hub, "run", "r1", "daily_kpis", "--bundle", digest)
    assert result.returncode == 0, result.stderr
    assert f"running job daily_kpis of bundle {digest[:12]}".encode() in result.stderr
    out = wire.DatasetManifest.from_json(runner(hub, "manifest", "r1", "daily_kpis").stdout)
    table = pa.Table.from_batches(list(wire.ChunkStore(hub / "chunks").batches(out)))
    # a Shanghai day in UTC spans two UTC days: two rows per machine
    assert table.num_rows == out.rows == 24
    assert sorted(set(table.column("machine_id").to_pylist())) == sorted(
        set(pa.Table.from_batches(list(store.batches(manifest))).column("machine_id").to_pylist())
    )
    metrics = json.loads(runner(hub, "metrics", "r1", "daily_kpis").stdout)
    assert metrics["bundle"] == digest
    assert not list((hub / "bundles").rglob("__pycache__"))  # running a job leaves the bundle as installed
    again = runner(hub, "run", "r1", "daily_kpis", "--bundle", digest)  # and it still verifies
    assert again.returncode == 0, again.stderr


def test_bundle_modified_on_the_hub_is_refused(tmp_path) -> None:
    hub = tmp_path / "hub"
    digest = install(hub, tmp_path)
    store, manifest = telemetry_day(tmp_path, machines=2)
    ship(hub, store, manifest)
    job = hub / "bundles" / digest / "jobs" / "daily_kpis.py"
    job.write_text(job.read_text() + "\nimport os\nos.system('touch /tmp/pwned')\n")
    for args, stdin in (
        (("run", "r1", "daily_kpis"), b""),
        (("params", "r1", "daily_kpis"), b"{}"),
        (("jobs",), b""),
    ):
        result = runner(hub, *args, "--bundle", digest, stdin=stdin)
        assert result.returncode == protocol.EXIT_VERIFY, (args, result.stderr)
        assert f"bundle {digest[:12]} on this hub was modified after it was installed".encode() in result.stderr
    assert not (hub / "scratch" / "r1" / "daily_kpis.dataset.json").exists()
    assert not (hub / "scratch" / "r1" / "daily_kpis.params.json").exists()


@pytest.mark.parametrize(
    "how", ["extra_file", "removed_file", "runner_changed", "symlinked_file", "pycache_dir", "empty_job_dir"]
)
def test_any_change_to_an_installed_bundle_is_refused(tmp_path, how) -> None:
    hub = tmp_path / "hub"
    digest = install(hub, tmp_path)
    directory = hub / "bundles" / digest
    if how == "extra_file":
        (directory / "jobs" / "sitecustomize.py").write_text("import os\n")
    elif how == "removed_file":
        (directory / "jobs" / "energy_per_unit.py").unlink()
    elif how == "symlinked_file":  # same bytes today, but outside the bundle: it could change after the check
        job = directory / "jobs" / "daily_kpis.py"
        outside = tmp_path / "outside.py"
        outside.write_bytes(job.read_bytes())
        job.unlink()
        job.symlink_to(outside)
    elif how == "pycache_dir":
        (directory / "jobs" / "__pycache__").mkdir()
    elif how == "empty_job_dir":
        (directory / "jobs" / "ghost.py").mkdir()
    else:
        runner_py = directory / "eastwest" / "west" / "runner.py"
        runner_py.write_text(runner_py.read_text().replace("EXIT_USAGE", "EXIT_USAGE "))
    result = runner(hub, "run", "r1", "daily_kpis", "--bundle", digest)
    assert result.returncode == protocol.EXIT_VERIFY
    assert b"modified after it was installed" in result.stderr


def test_a_package_in_the_working_directory_cannot_replace_the_bundles_runner(tmp_path) -> None:
    """The bundle's runner is exec'ed with -P: an ``eastwest`` package in the working directory is never imported."""
    hub = tmp_path / "hub"
    digest = install(hub, tmp_path)
    trap = tmp_path / "cwd" / "eastwest"
    (trap / "west").mkdir(parents=True)
    (trap / "__init__.py").write_text("")
    (trap / "west" / "__init__.py").write_text("")
    (trap / "west" / "runner.py").write_text("raise SystemExit('the working directory was imported')\n")
    result = subprocess.run(
        [str(WEST_PYTHON), "-B", "-P", "-m", "eastwest.west.runner", "--root", str(hub), "jobs", "--bundle", digest],
        cwd=tmp_path / "cwd",
        env={"PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == PROJECT_JOBS


def test_install_bundle_refuses_a_digest_that_does_not_match_the_shipped_content(tmp_path) -> None:
    hub = tmp_path / "hub"
    store = wire.ChunkStore(tmp_path / "east-bundle")
    digest, manifest = bundle_dataset(bundle.collect(JOBS), store)
    ship(hub, store, manifest, "r1", protocol.BUNDLE_DATASET)
    other = bundle.digest_of({**bundle.describe(bundle.collect(JOBS)), "jobs/extra.py": "0" * 64})
    result = runner(hub, "install-bundle", "r1", protocol.BUNDLE_DATASET, "--digest", other)
    assert result.returncode == protocol.EXIT_VERIFY
    assert f"bundle content hashes to {digest[:12]}, not the announced {other[:12]}".encode() in result.stderr
    assert "Traceback" not in result.stderr.decode()
    assert not (hub / "bundles").exists() or list((hub / "bundles").iterdir()) == []
    refused = runner(hub, "run", "r1", "daily_kpis", "--bundle", other)
    assert refused.returncode == protocol.EXIT_MISSING


def test_install_bundle_refuses_files_outside_the_bundle_layout(tmp_path) -> None:
    hub = tmp_path / "hub"
    files = {**bundle.collect(JOBS), "jobs/../../evil.py": b"print('pwned')\n"}
    store = wire.ChunkStore(tmp_path / "east-bundle")
    digest, manifest = bundle_dataset(files, store)
    ship(hub, store, manifest, "r1", protocol.BUNDLE_DATASET)
    result = runner(hub, "install-bundle", "r1", protocol.BUNDLE_DATASET, "--digest", digest)
    assert result.returncode == protocol.EXIT_VERIFY
    assert b"bundle file name 'jobs/../../evil.py' is not allowed" in result.stderr
    assert not (hub / "evil.py").exists() and not (hub / "bundles" / digest).exists()


def test_install_bundle_without_a_shipped_bundle_says_to_ship_first(tmp_path) -> None:
    result = runner(tmp_path, "install-bundle", "r1", protocol.BUNDLE_DATASET, "--digest", "ab" * 32)
    assert result.returncode == protocol.EXIT_MISSING
    assert b"bundle bundle is not on this hub for run r1; ship it first" in result.stderr


def test_a_new_job_in_a_copy_of_the_jobs_package_runs_from_its_bundle(tmp_path) -> None:
    jobs_dir = tmp_path / "jobs"
    shutil.copytree(JOBS, jobs_dir)
    (jobs_dir / "sum_x.py").write_text(
        '"""Sum of x."""\n\nimport polars as pl\n\nINPUTS = ("readings",)\nPARAMS = {}\n\n\n'
        "def transform(readings, params):\n    return readings.select(pl.col('x').sum().alias('total'))\n"
    )
    hub = tmp_path / "hub"
    digest = install(hub, tmp_path, jobs_dir)
    assert json.loads(runner(hub, "jobs", "--bundle", digest).stdout) == sorted([*PROJECT_JOBS, "sum_x"])
    store, manifest = chunked(tmp_path, rows=1000)
    ship(hub, store, manifest)
    result = runner(hub, "run", "r1", "sum_x", "--bundle", digest)
    assert result.returncode == 0, result.stderr
    out = wire.DatasetManifest.from_json(runner(hub, "manifest", "r1", "sum_x").stdout)
    assert pa.Table.from_batches(list(wire.ChunkStore(hub / "chunks").batches(out))).to_pylist() == [
        {"total": sum(range(1000))}
    ]


def test_cleanup_keeps_recent_chunks_and_collects_old_unreferenced_ones(tmp_path) -> None:
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


def run_in_process(root: Path, run: str, job: str, jobs_root: Path) -> wire.DatasetManifest:
    """The runner's job step in this process (so a test can shrink the group size)."""
    import argparse

    from eastwest.west import runner as west_runner

    west_runner._run_job(argparse.Namespace(root=root, run=run, job=job, bundle="b" * 64), jobs_root)
    return wire.load_dataset_manifest(west_runner.dataset_path(root, run, job))


def test_a_job_declaring_partition_by_runs_group_by_group_with_the_same_result(tmp_path, monkeypatch, capsys) -> None:
    """daily_kpis declares PARTITION_BY = ("machine_id",): over the group size the hub runs it
    machine group by machine group (memory flat in the input's size), with the same rows."""
    from eastwest.west import runner as west_runner

    east, manifest = telemetry_day(tmp_path, machines=40)
    results = {}
    for mode, limit in (("whole", 1 << 40), ("groups", manifest.raw_bytes // 5)):
        root = tmp_path / mode
        hub = wire.ChunkStore(root / "chunks")
        for chunk in manifest.chunks:
            assert hub.receive(chunk.sha256, chunk.bytes, open(east.path(chunk.sha256), "rb"))
        wire.save_dataset_manifest(west_runner.dataset_path(root, "r", "readings"), manifest)
        monkeypatch.setattr(west_runner, "PARTITION_RAW_BYTES", limit)
        out = run_in_process(root, "r", "daily_kpis", ROOT / "include")
        results[mode] = pa.Table.from_batches(list(hub.batches(out))).sort_by(
            [("day", "ascending"), ("machine_id", "ascending")]
        )
        assert not (root / "scratch" / "r" / "daily_kpis.groups").exists()  # the spill is gone
    assert "input readings verified: 57600 rows, run in 6 groups of machine_id" in capsys.readouterr().err
    assert results["groups"].num_rows == 40
    assert results["groups"].equals(results["whole"])


def test_partition_by_is_checked_when_the_job_is_read(tmp_path) -> None:
    from eastwest.west import jobs

    (tmp_path / "two.py").write_text(
        'INPUTS = ("a", "b")\nPARTITION_BY = ("k",)\ndef transform(a, b, params):\n    return a\n'
    )
    (tmp_path / "bad.py").write_text(
        'INPUTS = ("a",)\nPARTITION_BY = ("k; rm",)\ndef transform(a, params):\n    return a\n'
    )
    with pytest.raises(jobs.JobError, match="PARTITION_BY needs exactly one input"):
        jobs.read_spec(tmp_path, "two")
    with pytest.raises(jobs.JobError, match="PARTITION_BY must be a tuple of column names"):
        jobs.read_spec(tmp_path, "bad")
    assert jobs.read_spec(ROOT / "include" / "jobs", "daily_kpis").partition_by == ("machine_id",)
