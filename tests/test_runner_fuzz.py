"""The western runner refuses every malformed request cleanly: one error line, a documented exit code.

The runner runs in this process (``runner.main(argv)`` with stdin, stdout and stderr replaced), so
Hypothesis can send it thousands of generated command lines and stdin documents in seconds; a few
cases at the end run it as a real process, as a hub does. Every call must end with an exit code of
:mod:`eastwest.west.protocol` (never the last-resort 70), at most one ``error`` line on stderr and no
traceback, start no program, and write nothing outside the hub's root. The specific tests above the
fuzzing each pin one finding of the outside test (they fail with the fix undone).

Hypothesis examples per test (``FUZZ_EXAMPLES``): arguments 2500, ``have`` 800, ``get`` 500, ``put``
800, ``commit`` 1000, ``params`` 1500: 7,100 generated inputs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from eastwest.west import bundle, jobs, protocol, runner, wire

JOBS = ROOT / "include" / "jobs"
PREFIX = "[eastwest.west] "
ERROR = PREFIX + "error: "
#: Where a command smuggled into an argument or stdin would leave its mark (checked after every test).
CANARY = Path(f"/tmp/eastwest-fuzz-canary-{os.getpid()}")
FUZZ_EXAMPLES = {"args": 2500, "have": 800, "get": 500, "put": 800, "commit": 1000, "params": 1500}


def fuzz_settings(name: str) -> settings:
    return settings(
        max_examples=FUZZ_EXAMPLES[name],
        deadline=None,
        database=None,  # no .hypothesis/ in the repository; a failure prints its reproduction blob
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,  # only nothing_outside_the_hub: it checks once, after all examples
        ],
    )


# -- the runner in this process ---------------------------------------------------------------------


class CommandExecuted(BaseException):
    """Raised by every way of starting a program while the runner runs (a BaseException: nothing catches it)."""


@dataclass
class Result:
    code: int
    out: bytes
    err: str

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()


class _Sink(io.BytesIO):
    def close(self) -> None:  # the TextIOWrapper around it is dropped when the call ends
        pass


_SPAWNERS = [
    (os, name)
    for name in (
        "system",
        "popen",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        "execl",
        "execle",
        "execlp",
        "spawnv",
        "spawnve",
        "posix_spawn",
        "posix_spawnp",
        "fork",
    )
    if hasattr(os, name)
] + [(subprocess, "Popen")]


@contextlib.contextmanager
def no_programs() -> Iterator[None]:
    saved = [(module, name, getattr(module, name)) for module, name in _SPAWNERS]

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise CommandExecuted(repr(args)[:200])

    for module, name, _ in saved:
        setattr(module, name, refuse)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def call(argv: list[str], stdin: bytes = b"") -> Result:
    """``runner.main(argv)`` with ``stdin`` as its standard input; its exit code, stdout and stderr."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)}
    saved = sys.stdin, sys.stdout, sys.stderr
    out = _Sink()
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    sys.stdout = io.TextIOWrapper(out, write_through=True)
    sys.stderr = err = io.StringIO()
    try:
        with no_programs():
            code = runner.main(argv)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return Result(code, out.getvalue(), err.getvalue())


def clean(result: Result, *codes: int) -> Result:
    """Assert a documented outcome: one of ``codes``; on failure exactly one short error line, no traceback."""
    assert isinstance(result.code, int) and result.code in protocol.EXIT_CODES, result
    assert result.code != protocol.EXIT_INTERNAL, f"the last-resort handler answered: {result.err}"
    assert result.code in codes, result
    assert "Traceback" not in result.err, result.err
    assert all(line.startswith(PREFIX) for line in result.lines), result.err
    assert all(len(line) <= len(ERROR) + protocol.MAX_LINE + 40 for line in result.lines), "an over-long log line"
    errors = [line for line in result.lines if line.startswith(ERROR)]
    if result.code == 0:
        assert errors == [], result.err
    else:
        assert len(errors) == 1 and result.lines[-1] == errors[0], result.err
    return result


def error_line(result: Result) -> str:
    assert result.code != 0, result
    return clean(result, result.code).lines[-1]


def frame(data: bytes, sha: str | None = None, size: int | None = None) -> bytes:
    sha = hashlib.sha256(data).hexdigest() if sha is None else sha
    return protocol.frame_header(sha, len(data) if size is None else size) + data


# -- a hub with an installed bundle and one small dataset -------------------------------------------


@dataclass
class Hub:
    root: Path
    sandbox: Path
    pristine: Path
    digest: str
    sample: wire.DatasetManifest
    sample_frames: bytes

    def argv(self, *args: str) -> list[str]:
        return ["--root", str(self.root), *args]

    def restore(self) -> None:
        """Undo what a fuzzed ``cleanup`` removed (the run's datasets, the bundle), so later examples reach deep."""
        needed = (
            self.root / "bundles" / self.digest,
            self.root / "scratch" / "r1" / "sample.dataset.json",
            self.root / "scratch" / "r1" / f"{protocol.BUNDLE_DATASET}.dataset.json",
            *(wire.ChunkStore(self.root / "chunks").path(c.sha256) for c in self.sample.chunks),
        )
        if not all(path.exists() for path in needed):
            shutil.rmtree(self.root)
            shutil.copytree(self.pristine, self.root, symlinks=True)


def ship(hub_root: Path, run: str, name: str, table: pa.Table, store: wire.ChunkStore) -> wire.DatasetManifest:
    manifest = wire.write_chunks(table.to_batches(), table.schema, store, target_raw_bytes=64 << 20)
    frames = b"".join(frame(store.path(c.sha256).read_bytes()) for c in manifest.chunks) + protocol.END
    clean(call(["--root", str(hub_root), "put"], frames), 0)
    clean(call(["--root", str(hub_root), "commit", run, name], manifest.to_json().encode()), 0)
    return manifest


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[Hub]:
    sandbox = tmp_path_factory.mktemp("fuzz")
    root, east = sandbox / "hub", wire.ChunkStore(sandbox / "east")
    files = bundle.collect(JOBS)
    digest = bundle.digest_of(bundle.describe(files))
    ship(root, "r1", protocol.BUNDLE_DATASET, bundle.to_table(files), east)
    clean(call(["--root", str(root), protocol.INSTALL_BUNDLE, "r1", protocol.BUNDLE_DATASET, "--digest", digest]), 0)
    sample = ship(root, "r1", "sample", pa.table({"x": list(range(1000)), "y": [i / 7 for i in range(1000)]}), east)
    sample_frames = b"".join(frame(east.path(c.sha256).read_bytes()) for c in sample.chunks)
    shutil.rmtree(sandbox / "east")
    pristine = sandbox / "pristine"
    shutil.copytree(root, pristine, symlinks=True)
    (sandbox / "cwd").mkdir()
    STATE.update(
        digest=digest,
        chunks=[c.sha256 for c in sample.chunks],
        entries=json.loads(sample.to_json())["chunks"],
        frames=sample_frames,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sandbox / "cwd")  # a relative path written by mistake would land here
        # The runner continues in this process instead of exec'ing the bundle's copy of itself
        # (the same bytes): _in_bundle still verifies the bundle, then finds it is running from it.
        mp.setattr(runner, "__file__", str(root / "bundles" / digest / "eastwest" / "west" / "runner.py"))
        # One parser for all calls (a process builds it once; building it takes 5 ms): reusing it
        # is safe, parse_args changes nothing in it.
        mp.setattr(runner, "build_parser", functools.cache(runner.build_parser))
        yield Hub(root, sandbox, pristine, digest, sample, sample_frames)
    CANARY.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def nothing_outside_the_hub(request) -> Iterator[None]:
    yield
    if "hub" in request.fixturenames:
        sandbox = request.getfixturevalue("hub").sandbox
        assert sorted(p.name for p in sandbox.iterdir()) == ["cwd", "hub", "pristine"]
        assert list((sandbox / "cwd").iterdir()) == []
        assert {p.name for p in (sandbox / "hub").iterdir()} <= {"chunks", "scratch", "bundles"}
    assert not CANARY.exists(), "a command smuggled into a request ran"


#: Filled by the ``hub`` fixture; strategies read it lazily (``st.deferred``).
STATE: dict[str, Any] = {}


# -- one test per finding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"../../etc/passwd 12\n", 2, "malformed chunk header b'../../etc/passwd 12\\n'"),
        (b"ab" * 32 + b" 5 extra\n", 2, "malformed chunk header"),
        (b"\xff\xfe 1\n", 2, "malformed chunk header"),
        (b"ab" * 400, 2, "malformed chunk header"),
        (b"AB" * 32 + b" 5\n", 2, "malformed chunk header"),
        (b"END", 2, "malformed chunk header b'END'"),
        (b"ab" * 32 + b" 999999999999\n", 3, "claims 999999999999 bytes; chunks are at most"),
        (b"ab" * 32 + b" 100\nshort", 3, "stream ended 95 bytes before the end of chunk abababababab"),
    ],
)
def test_bad_put_frame_headers_are_refused_in_one_line(hub, body, code, message) -> None:
    good = frame(b"not arrow, but whole")
    result = call(hub.argv("put"), good + body)
    assert message in error_line(result) and result.code == code
    assert json.loads(result.out.splitlines()[0]) == {
        "sha256": hashlib.sha256(b"not arrow, but whole").hexdigest(),
        "ok": False,
    }
    assert not [p for p in hub.root.rglob("*") if p.name.endswith(".partial")]


@pytest.mark.parametrize("depth", [protocol.MAX_JSON_DEPTH + 1, 990, 100_000])
@pytest.mark.parametrize("command", ["have", "get", "params", "commit"])
def test_deeply_nested_json_is_refused_before_it_is_parsed(hub, monkeypatch, command, depth) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("json.loads was called on a document nested too deep")

    monkeypatch.setattr(json, "loads", never)
    argv = {
        "have": ["have"],
        "get": ["get"],
        "params": ["params", "r1", "daily_kpis", "--bundle", hub.digest],
        "commit": ["commit", "r1", "deep"],
    }[command]
    for body, deep in (
        (b"[" * depth + b"]" * depth, depth),
        (b'{"tz": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}", depth + 1),
        (b'["' + b"[" * 100 + b'", ' + b"[" * depth, depth + 1),  # brackets in a string do not count; unclosed do
    ):
        result = call(hub.argv(*argv), body)
        assert f"arrays and objects nest {deep} deep; the limit is {protocol.MAX_JSON_DEPTH}" in error_line(result)
        assert result.code == (protocol.EXIT_VERIFY if command == "commit" else protocol.EXIT_USAGE)


def test_json_nested_within_the_limit_and_brackets_in_strings_are_fine(hub) -> None:
    body = json.dumps({"tz": "UTC", "enterprise_ids": ["E0001"]}).encode()
    assert clean(call(hub.argv("params", "r1", "daily_kpis", "--bundle", hub.digest), body), 0)
    tricky = json.dumps({"tz": "[[[[[[[[[[[[[[[[[[[[" + '\\"{{{{{{{{{{{{{{{{{{{{{'}).encode()
    result = call(hub.argv("params", "r1", "daily_kpis", "--bundle", hub.digest), tricky)
    assert "is not a time zone of the tz database" in error_line(result)


@pytest.mark.parametrize(
    "body",
    [
        b'{"chunks": []}',
        b'{"chunks": [], "rows": 0, "bytes": 0, "sha256": "' + hashlib.sha256(b"").hexdigest().encode() + b'"}',
    ],
)
def test_an_empty_dataset_cannot_be_committed(hub, body) -> None:
    result = call(hub.argv("commit", "r-empty", "readings"), body)
    assert result.code == protocol.EXIT_USAGE
    assert "dataset readings is empty: its manifest names no chunks, and an empty dataset cannot be committed" in (
        error_line(result)
    )
    assert not (hub.root / "scratch" / "r-empty" / "readings.dataset.json").exists()


def test_an_empty_dataset_already_on_a_hub_is_refused_by_run(hub) -> None:
    """One committed by an older runner: ``run`` says so instead of pyarrow's "Must pass schema"."""
    wire.save_dataset_manifest(hub.root / "scratch" / "r-old" / "readings.dataset.json", wire.DatasetManifest(()))
    result = call(hub.argv("run", "r-old", "daily_kpis", "--bundle", hub.digest))
    assert result.code == protocol.EXIT_VERIFY
    assert "input readings is an empty dataset (no chunks, no schema); ship it again" in error_line(result)
    shutil.rmtree(hub.root / "scratch" / "r-old")


PATH_LIKE = [
    "../../etc/passwd",
    "/etc/passwd",
    "/usr/share/zoneinfo/UTC",
    "Asia/../../../etc/passwd",
    "Asia/Shanghai/../../../../etc/shadow",
    "./UTC",
    "UTC/.",
    "Asia//Shanghai",
    "Asia/Shanghai/",
    "Asia/Shanghai\x00",
    "Asia/Shanghai\n",
    " UTC",
    "~root",
    "zone.tab",
    "tzdata.zi",
    "$(id)",
    "Mars/Olympus_Mons",  # shaped like a name, but not in the tz database
    "UTC/UTC",
]


@pytest.mark.parametrize("tz", PATH_LIKE)
def test_a_timezone_parameter_must_name_the_tz_database(hub, tz) -> None:
    target = hub.root / "scratch" / "r-tz" / "daily_kpis.params.json"
    result = call(hub.argv("params", "r-tz", "daily_kpis", "--bundle", hub.digest), json.dumps({"tz": tz}).encode())
    assert result.code == protocol.EXIT_USAGE
    assert f"parameter tz of job daily_kpis {tz[:40]!r} is not a time zone of the tz database" in error_line(result)
    assert not target.exists()


@pytest.mark.parametrize("tz", ["UTC", "Asia/Shanghai", "Etc/GMT+5", "America/Argentina/Buenos_Aires", "Europe/Berlin"])
def test_names_of_the_tz_database_are_accepted(hub, tz) -> None:
    clean(call(hub.argv("params", "r-tz", "daily_kpis", "--bundle", hub.digest), json.dumps({"tz": tz}).encode()), 0)
    assert json.loads((hub.root / "scratch" / "r-tz" / "daily_kpis.params.json").read_text())["tz"] == tz


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"NaN", "parameter z_threshold of job daily_kpis must be a finite number"),
        (b"Infinity", "parameter z_threshold of job daily_kpis must be a finite number"),
        (b"-Infinity", "parameter z_threshold of job daily_kpis must be a finite number"),
        (b"1e999", "parameter z_threshold of job daily_kpis must be a finite number"),
        (b"-1e400", "parameter z_threshold of job daily_kpis must be a finite number"),
        (b"1" + b"0" * 400, "are not valid JSON: an integer of 401 digits is out of range"),
        (b"9" * 30, "parameter z_threshold of job daily_kpis is out of range: int 9999"),
        (str(1 << 63).encode(), "parameter z_threshold of job daily_kpis is out of range"),
        (b"true", "parameter z_threshold of job daily_kpis must be a number, not True"),
        (b"[3.5]", "parameter z_threshold of job daily_kpis must be a number, not list"),
        (b"0.4", "parameter z_threshold of job daily_kpis must be at least 0.5"),
    ],
)
def test_numbers_must_be_finite_and_in_range(hub, value, message) -> None:
    body = b'{"z_threshold": ' + value + b"}"
    result = call(hub.argv("params", "r-num", "daily_kpis", "--bundle", hub.digest), body)
    assert result.code == protocol.EXIT_USAGE
    assert message in error_line(result)
    assert not (hub.root / "scratch" / "r-num" / "daily_kpis.params.json").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"tz": "' + b"A" * 12_000_000 + b'"}', "parameters for daily_kpis are larger than 1 MiB (1048576 bytes)"),
        (b'{"' + b"k" * 500_000 + b'": 1}', "does not take parameter(s) 'kkkkkkkk"),
        (b'{"tz": "' + b"Z" * 500_000 + b'"}', "parameter tz of job daily_kpis is longer than 256 characters"),
        (b'{"tz": "UTC", "tz": "' + b"Q" * 100_000 + b'"}', "key 'tz' appears twice in one object"),
        (b'{"a\\n\\u001b[31mred": 1}', "does not take parameter(s) 'a\\n\\x1b[31mred'"),
        (
            json.dumps({f"k{i}": i for i in range(100)}).encode(),
            "does not take parameter(s) k0, k1, k10, k11, k12 and 95",
        ),
        (b'{"enterprise_ids": ["' + b"E" * 300_000 + b'"]}', "parameter enterprise_ids of job daily_kpis is longer"),
    ],
)
def test_parameters_are_never_echoed_in_full(hub, body, message) -> None:
    result = call(hub.argv("params", "r-big", "daily_kpis", "--bundle", hub.digest), body)
    line = error_line(result)
    assert result.code == protocol.EXIT_USAGE and message in line
    assert len(line) < 400, line
    assert not (hub.root / "scratch" / "r-big").exists()


def test_digest_lists_and_manifests_have_a_size_limit(hub) -> None:
    digests = b"[" + b",".join([b'"' + b"ab" * 32 + b'"'] * (protocol.MAX_DIGESTS_BYTES // 67 + 1)) + b"]"
    assert len(digests) > protocol.MAX_DIGESTS_BYTES
    for command in ("have", "get"):
        line = error_line(call(hub.argv(command), digests))
        assert "the list of chunk digests is larger than 64 MiB (67108864 bytes), the limit" in line
    line = error_line(call(hub.argv("commit", "r-big", "readings"), b" " * (protocol.MAX_MANIFEST_BYTES + 1)))
    assert "dataset readings failed verification: its manifest is larger than 64 MiB" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus"], "argument command: invalid choice: 'bogus'"),
        ([], "the following arguments are required: command"),
        (["cleanup"], "the following arguments are required: run"),
        (["cleanup", "r1", "--keep-hours", "-5"], "'-5' is not a number of hours between 0 and 1e6"),
        (["cleanup", "r1", "--keep-hours", "nan"], "'nan' is not a number of hours between 0 and 1e6"),
        (["cleanup", "r1", "--keep-hours", "soon"], "argument --keep-hours: 'soon' is not a number of hours"),
        (["manifest", "r1", "x;touch /tmp/y"], "argument name: name 'x;touch /tmp/y' is not allowed"),
        (["manifest", "r1", "n" * 5000], "… (5000 characters) is not allowed"),
        (["jobs", "--bundle", "$(id)"], "argument --bundle: '$(id)' is not a SHA-256 digest"),
        (["have", "--unknown"], "unrecognized arguments: --unknown"),
    ],
)
def test_a_bad_command_line_is_one_line_not_a_usage_text(hub, argv, message) -> None:
    result = call(hub.argv(*argv))
    assert result.code == protocol.EXIT_USAGE and message in error_line(result)
    assert result.out == b""


def test_a_root_that_cannot_be_a_path_is_refused(tmp_path) -> None:
    assert "argument --root: 'hub\\x00' is not a directory name" in error_line(call(["--root", "hub\x00", "have"]))
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    result = call(["--root", str(tmp_path / "loop" / "hub"), "have"], b"[]")
    assert result.code in (0, protocol.EXIT_USAGE)  # Python 3.11 raises on a symlink loop, later versions do not
    clean(result, 0, protocol.EXIT_USAGE)


def test_the_last_resort_handler_answers_in_one_line_with_its_own_code(hub, monkeypatch) -> None:
    def broken(*args: Any) -> Any:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(runner, "store", broken)
    result = call(hub.argv("have"), b"[]")
    assert result.code == protocol.EXIT_INTERNAL
    assert result.lines == [f"{ERROR}internal error, OSError: [Errno 5] Input/output error"]


def test_a_full_disk_is_named_as_such(hub, monkeypatch) -> None:
    def full(*args: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner, "store", full)
    result = call(hub.argv("have"), b"[]")
    assert result.code == protocol.EXIT_INTERNAL
    assert result.lines == [
        f"{ERROR}the hub's disk is full (No space left on device); free space on the hub, then retry"
    ]


def test_a_job_that_raises_exits_1_with_one_line_naming_the_exception_and_the_line(tmp_path, monkeypatch) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "boom.py").write_text(
        '"""Fails."""\n\nINPUTS = ("readings",)\nPARAMS = {}\n\n\ndef transform(readings, params):\n'
        '    raise ZeroDivisionError("no\\nway")\n'
    )
    root, store = tmp_path / "hub", wire.ChunkStore(tmp_path / "east")
    files = bundle.collect(jobs_dir)
    digest = bundle.digest_of(bundle.describe(files))
    ship(root, "r1", protocol.BUNDLE_DATASET, bundle.to_table(files), store)
    clean(call(["--root", str(root), protocol.INSTALL_BUNDLE, "r1", protocol.BUNDLE_DATASET, "--digest", digest]), 0)
    ship(root, "r1", "readings", pa.table({"x": [1, 2]}), store)
    monkeypatch.setattr(runner, "__file__", str(root / "bundles" / digest / "eastwest" / "west" / "runner.py"))
    result = call(["--root", str(root), "run", "r1", "boom", "--bundle", digest])
    assert result.code == protocol.EXIT_JOB == 1
    assert result.lines[-1] == f"{ERROR}job boom failed: ZeroDivisionError: no\\nway (jobs/boom.py line 8)"
    clean(result, 1)


def test_a_dataset_that_is_not_a_bundle_is_refused_by_install_bundle(hub) -> None:
    result = call(hub.argv(protocol.INSTALL_BUNDLE, "r1", "sample", "--digest", hub.digest))
    assert result.code == protocol.EXIT_VERIFY
    assert "refused: the dataset has columns x, y, not path, sha256, content" in error_line(result)


def test_a_line_break_in_a_message_cannot_forge_a_log_line(hub, tmp_path) -> None:
    """Column names of a shipped dataset reach a message as they are; the log line escapes them."""
    forged = "x\n[eastwest.west] job bundle installed\r\x1b[2K"
    ship(hub.root, "r-forged", "bundle", pa.table({forged: [1]}), wire.ChunkStore(tmp_path / "east"))
    result = call(hub.argv(protocol.INSTALL_BUNDLE, "r-forged", "bundle", "--digest", hub.digest))
    assert result.code == protocol.EXIT_VERIFY
    assert "has columns x\\n[eastwest.west] job bundle installed\\r\\x1b[2K, not path" in error_line(result)
    shutil.rmtree(hub.root / "scratch" / "r-forged")


def test_a_manifest_damaged_on_the_hub_is_refused_in_one_line(hub) -> None:
    damaged = hub.root / "scratch" / "r-damaged" / "readings.dataset.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text('{"chunks": [{"sha256": "x"}]')
    for argv, code in ((["manifest", "r-damaged", "readings"], 3), (["cleanup", "r-other"], 3)):
        result = call(hub.argv(*argv))
        assert result.code == code and "readings.dataset.json of run r-damaged on this hub is damaged" in (
            error_line(result)
        )
    shutil.rmtree(damaged.parent)


# -- strategies -------------------------------------------------------------------------------------

#: Each command's arguments: a name, or the option that takes a digest (``?``: may be left out).
SHAPES = {
    protocol.HAVE: [],
    protocol.PUT: [],
    protocol.GET: [],
    protocol.COMMIT: ["name", "name"],
    protocol.MANIFEST: ["name", "name"],
    protocol.INSTALL_BUNDLE: ["name", "name", "--digest"],
    protocol.PARAMS: ["name", "name", "--bundle"],
    protocol.RUN: ["name", "name", "--bundle"],
    protocol.METRICS: ["name", "name"],
    protocol.CLEANUP: ["name", "--keep-hours?"],
    protocol.JOBS: ["--bundle"],
}
COMMANDS = list(SHAPES)
INJECTIONS = [
    f";touch {CANARY}",
    f"x;touch {CANARY}",
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"|touch {CANARY}",
    f"&&touch {CANARY}",
    f"\ntouch {CANARY}",
    f"r1 $(touch {CANARY})",
    f"--bundle=$(touch {CANARY})",
    "../../etc/passwd",
    "../x",
    "/tmp",
    "-rf",
    "*",
    "~",
    "",
    " ",
    "\x1b[2J",
]
#: Argument bytes as a hub's Python sees them (undecodable bytes as surrogates); argv holds no NUL.
argv_bytes = st.binary(max_size=24).map(lambda b: os.fsdecode(b.replace(b"\x00", b"")))
names = st.one_of(
    st.sampled_from(["r1", "r2", "sample", "bundle", "readings", "daily_kpis", "energy_per_unit", "x.y-z", "A" * 128]),
    st.from_regex(protocol.SAFE_NAME, fullmatch=True),
    st.sampled_from(INJECTIONS),
    st.text(max_size=30),
    argv_bytes,
)
digest_args = st.one_of(
    st.deferred(lambda: st.just(STATE["digest"])),
    st.deferred(lambda: st.just(STATE["digest"])),
    st.deferred(lambda: st.sampled_from(STATE["chunks"])),
    st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    st.sampled_from(["AB" * 32, "ab" * 31, "ab" * 33, "ab" * 32 + "\n", f"$(touch {CANARY})"]),
    st.text(max_size=70),
)
hours = st.one_of(
    st.floats().map(str),
    st.integers(-100, 10**6).map(str),
    st.sampled_from(["0", "24", "1e309", "-0", "inf", "nan", "0x10", "24h", ""]),
)
options = st.one_of(
    st.tuples(st.sampled_from(["--bundle", "--digest"]), digest_args).map(list),
    st.tuples(st.sampled_from(["--bundle=", "--digest=", "--bun=", "--keep-hours="]), names).map(
        lambda t: [t[0] + t[1]]
    ),
    hours.map(lambda h: ["--keep-hours", h]),
    st.sampled_from([["-h"], ["--help"], ["--"], ["-"], ["--offset", "5"], ["--bundle"], ["-x"]]),
)
tokens = st.one_of(st.sampled_from(COMMANDS), names, digest_args, options.map(lambda o: o[0]), st.text(max_size=12))
good_names = st.sampled_from(["r1", "r2", "sample", "bundle", "readings", "daily_kpis", "energy_per_unit"])


@st.composite
def shaped_argv(draw: Any) -> list[str]:
    """A command with the arguments it takes, each valid or not; now and then a token too many or too few."""
    argv = [draw(st.sampled_from(COMMANDS))]
    for slot in SHAPES[argv[0]]:
        if slot == "name":
            argv.append(draw(st.one_of(good_names, good_names, names)))
        elif slot == "--keep-hours?":
            argv += ["--keep-hours", draw(hours)] if draw(st.booleans()) else []
        else:
            argv += [slot, draw(digest_args)]
    change = draw(st.sampled_from(["none", "none", "none", "add", "drop", "swap"]))
    if change == "add":
        argv.insert(draw(st.integers(0, len(argv))), draw(tokens))
    elif change == "drop" and argv:
        del argv[draw(st.integers(0, len(argv) - 1))]
    elif change == "swap" and len(argv) > 1:
        i = draw(st.integers(0, len(argv) - 2))
        argv[i], argv[i + 1] = argv[i + 1], argv[i]
    return argv


structured_argv = st.tuples(
    st.sampled_from(COMMANDS), st.lists(st.one_of(names.map(lambda n: [n]), options), max_size=4)
).map(lambda t: [t[0], *(token for group in t[1] for token in group)])
random_argv = st.lists(tokens, max_size=7)


def _no_root_option(argv: list[str]) -> bool:
    """The forced command fixes ``--root``; a fuzzed one (or an abbreviation) would point the runner elsewhere."""
    return not any(token.startswith("--r") for token in argv)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**45), max_value=10**45),
    st.floats(),  # NaN and Infinity too: json.dumps writes them as the literals NaN and Infinity
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
#: Ways to nest: what opens one level (or two) and what closes it.
NESTINGS = [(b"[", b"]"), (b'{"a": ', b"}"), (b'["x", ', b"]"), (b'{"tz": [', b"]}")]


def nested(depth: int, nesting: tuple[bytes, bytes]) -> bytes:
    return nesting[0] * depth + b"1" + nesting[1] * depth


deep_documents = st.builds(nested, st.integers(1, 3000), st.sampled_from(NESTINGS))


def spliced(document: bytes, at: int, junk: bytes, cut: bool) -> bytes:
    """A near-valid document: bytes inserted somewhere, or the document cut short there."""
    at %= len(document) + 1
    return document[:at] if cut else document[:at] + junk + document[at:]


def near(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(spliced, valid, st.integers(0, 10**6), st.binary(min_size=1, max_size=4), st.booleans())


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


digest_strings = st.one_of(
    st.deferred(lambda: st.sampled_from(STATE["chunks"])),
    st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    st.sampled_from(["../../etc/passwd", "AB" * 32, "ab" * 32 + "\n", "ab" * 31, f"$(touch {CANARY})"]),
    st.text(max_size=70),
)
digest_texts = st.one_of(digest_strings, json_scalars)
digest_documents = st.one_of(
    st.lists(digest_texts, max_size=8).map(dumps),
    json_values.map(dumps),
    near(st.lists(digest_texts, max_size=4).map(dumps)),
    deep_documents,
    st.binary(max_size=200),
)

counts = st.one_of(st.integers(-5, 10**6), st.integers(min_value=10**18, max_value=10**44), json_scalars)
chunk_entries = st.one_of(
    st.deferred(lambda: st.sampled_from(STATE["entries"])),
    st.deferred(lambda: st.sampled_from(STATE["entries"])).flatmap(
        lambda entry: st.fixed_dictionaries({}, optional={k: st.just(v) | counts for k, v in entry.items()})
    ),
    st.fixed_dictionaries({"sha256": digest_texts, "bytes": counts, "rows": counts}, optional={"raw_bytes": counts}),
    json_values,
)
manifests = st.fixed_dictionaries(
    {"chunks": st.lists(chunk_entries, max_size=3)},
    optional={"sha256": digest_texts, "rows": counts, "bytes": counts, "raw_bytes": counts, "x": json_values},
)
manifest_documents = st.one_of(
    manifests.map(dumps),
    near(manifests.map(dumps)),
    st.deferred(lambda: st.just(dumps({"chunks": STATE["entries"]}))),  # the sample, whole
    json_values.map(dumps),
    deep_documents,
    st.binary(max_size=200),
)

ZONES = sorted(zoneinfo.available_timezones())
TZ_SET = frozenset(ZONES)
tz_values = st.one_of(
    st.sampled_from(ZONES),
    st.sampled_from(PATH_LIKE + INJECTIONS),
    st.sampled_from(ZONES).map(lambda z: z.lower()),
    st.sampled_from(ZONES).map(lambda z: f"../{z}"),
    st.from_regex(r"[A-Za-z/._+~-]{1,30}", fullmatch=True),
    st.text(max_size=40),
    st.integers(0, 400).map(lambda n: "Asia/" + "x" * n),
    json_scalars,
)
numbers = st.one_of(
    st.floats(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(min_value=0, max_value=60),
    st.booleans(),
    st.text(max_size=6),
    json_values,
)
enterprise_ids = st.one_of(
    st.lists(
        st.one_of(st.from_regex(r"E[0-9]{4}", fullmatch=True), st.sampled_from(INJECTIONS), json_scalars), max_size=8
    ),
    st.from_regex(r"E[0-9]{4}(,E[0-9]{4}){0,3}", fullmatch=True),
    json_values,
)
param_objects = st.builds(
    lambda extra, known: {**extra, **known},
    st.one_of(
        st.just({}),
        st.dictionaries(
            st.one_of(st.sampled_from(["tz", "z_threshold"]), st.text(max_size=12)), json_values, max_size=2
        ),
    ),
    st.fixed_dictionaries({}, optional={"tz": tz_values, "z_threshold": numbers, "enterprise_ids": enterprise_ids}),
)
valid_params = st.fixed_dictionaries(
    {},
    optional={
        "tz": st.sampled_from(ZONES),
        "z_threshold": st.one_of(st.floats(0.5, 50), st.integers(1, 50)),
        "enterprise_ids": st.lists(st.from_regex(r"E[0-9]{4}", fullmatch=True), max_size=10),
    },
)
BAD_VALUES = {"tz": tz_values, "z_threshold": numbers, "enterprise_ids": enterprise_ids}
one_bad_param = st.tuples(valid_params, st.sampled_from(sorted(BAD_VALUES))).flatmap(
    lambda t: BAD_VALUES[t[1]].map(lambda bad: {**t[0], t[1]: bad})
)
param_documents = st.one_of(
    valid_params.map(dumps),
    one_bad_param.map(dumps),
    one_bad_param.map(dumps),
    param_objects.map(dumps),
    near(valid_params.map(dumps)),
    st.sampled_from([b"NaN", b"-Infinity", b"1e999", b"-1e400", b"1" + b"0" * 50, b"9" * 19, b"-0", b"0.5e1"]).map(
        lambda n: b'{"z_threshold": ' + n + b"}"
    ),
    st.tuples(tz_values, tz_values).map(lambda t: b'{"tz": ' + dumps(t[0]) + b', "tz": ' + dumps(t[1]) + b"}"),
    deep_documents,
    json_values.map(dumps),
    st.binary(max_size=200),
    st.integers(0, 20_000).map(lambda n: b'{"tz": "' + b"A" * n + b'"}'),
)


# -- fuzzing ----------------------------------------------------------------------------------------


@fuzz_settings("args")
@given(
    argv=st.one_of(shaped_argv(), shaped_argv(), structured_argv, random_argv).filter(_no_root_option),
    stdin=st.sampled_from([b"", b"[]", b"{}"]),
)
def test_fuzzed_command_lines(hub, argv, stdin) -> None:
    result = call(hub.argv(*argv), stdin)
    clean(result, 0, protocol.EXIT_USAGE, protocol.EXIT_VERIFY, protocol.EXIT_MISSING)
    event(f"{argv[0] if argv and argv[0] in COMMANDS else 'other'}: exit {result.code}")
    hub.restore()


@fuzz_settings("have")
@given(stdin=digest_documents)
def test_fuzzed_have(hub, stdin) -> None:
    result = clean(call(hub.argv("have"), stdin), 0, protocol.EXIT_USAGE)
    event(f"exit {result.code}")
    if result.code == 0:
        assert set(json.loads(result.out)) <= set(STATE["chunks"])


@fuzz_settings("get")
@given(stdin=digest_documents)
def test_fuzzed_get(hub, stdin) -> None:
    result = clean(call(hub.argv("get"), stdin), 0, protocol.EXIT_USAGE, protocol.EXIT_MISSING)
    event(f"exit {result.code}")
    if result.code == 0:
        assert result.out.endswith(protocol.END)


frames = st.one_of(
    st.binary(max_size=64).map(frame),  # whole and hashing right, but not Arrow: answered ok false
    st.tuples(st.binary(max_size=64), st.integers(-3, 3)).map(lambda t: frame(t[0], size=max(0, len(t[0]) + t[1]))),
    st.tuples(st.binary(max_size=32), digest_strings).map(
        lambda t: frame(t[0], sha=t[1]) if re.fullmatch(r"[0-9a-f]{64}", t[1]) else t[1].encode() + b" 3\n" + t[0]
    ),
    st.binary(max_size=140).map(lambda b: b + b"\n"),
    st.integers(wire.MAX_CHUNK_BYTES - 2, 10**40).map(lambda n: f"{'ab' * 32} {n}\n".encode()),
    st.deferred(lambda: st.just(STATE["frames"])),  # a real chunk: stored, answered ok true
)


@fuzz_settings("put")
@given(parts=st.lists(frames, max_size=5), end=st.sampled_from([protocol.END, b"", b"END", b"END\nmore"]))
def test_fuzzed_put(hub, parts, end) -> None:
    result = clean(call(hub.argv("put"), b"".join(parts) + end), 0, protocol.EXIT_USAGE, protocol.EXIT_VERIFY)
    event(f"exit {result.code}, {result.out.count(b'true')} chunks stored")
    for line in result.out.splitlines():
        assert set(json.loads(line)) == {"sha256", "ok"}
    assert not [p for p in (hub.root / "chunks").rglob("*") if p.name.endswith(".partial")]


@fuzz_settings("commit")
@given(run=names, name=names, stdin=manifest_documents)
def test_fuzzed_commit(hub, run, name, stdin) -> None:
    target = None
    if protocol.is_safe_name(run) and protocol.is_safe_name(name):
        target = hub.root / "scratch" / run / f"{name}.dataset.json"
        if (run, name) in (("r1", "sample"), ("r1", protocol.BUNDLE_DATASET)):
            return  # the fixture's own datasets stay as they are
        target.unlink(missing_ok=True)
    result = clean(call(hub.argv("commit", run, name), stdin), 0, protocol.EXIT_USAGE, protocol.EXIT_VERIFY)
    event(f"exit {result.code}")
    if result.code == 0:
        committed = wire.load_dataset_manifest(target)  # the sample's chunk, perhaps more than once
        assert committed.chunks and all(
            (c.sha256, c.bytes, c.rows) == (hub.sample.chunks[0].sha256, hub.sample.chunks[0].bytes, 1000)
            for c in committed.chunks
        )
        wire.ChunkStore(hub.root / "chunks").verify_dataset(committed)
        target.unlink()
    elif target is not None:
        assert not target.exists()


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} was stored")

    return json.loads(text, parse_constant=refuse)


@fuzz_settings("params")
@given(
    job=st.integers(0, 9).flatmap(lambda i: names if i == 0 else st.sampled_from(["daily_kpis", "energy_per_unit"])),
    stdin=param_documents,
)
def test_fuzzed_params(hub, job, stdin) -> None:
    target = hub.root / "scratch" / "r-fuzz" / f"{job}.params.json" if protocol.is_safe_name(job) else None
    if target is not None:
        target.unlink(missing_ok=True)
    result = clean(call(hub.argv("params", "r-fuzz", job, "--bundle", hub.digest), stdin), 0, protocol.EXIT_USAGE)
    event(f"exit {result.code}" + (f": {result.lines[-1][len(ERROR) :][:34]}" if result.code else ""))
    if result.code != 0:
        assert target is None or not target.exists()
        return
    stored = _strict(target.read_text())
    spec = jobs.read_spec(JOBS, job)
    assert set(stored) == set(spec.params)
    assert stored["tz"] in TZ_SET and "." not in stored["tz"]
    if job == "daily_kpis":
        assert isinstance(stored["z_threshold"], int | float) and not isinstance(stored["z_threshold"], bool)
        assert math.isfinite(stored["z_threshold"]) and 0.5 <= stored["z_threshold"] <= 50
        ids = stored["enterprise_ids"]
        assert ids == sorted(set(ids)) and len(ids) <= 600 and all(re.fullmatch(r"E[0-9]{4}", i) for i in ids)


# -- as a hub runs it: a real process ---------------------------------------------------------------


def process(hub: Hub, *args: str, stdin: bytes = b"") -> Result:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-B", "-m", "eastwest.west.runner", "--root", str(hub.root), *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=hub.sandbox / "cwd",
    )
    return Result(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (["cleanup", f";touch {CANARY}"], b"", 2, "is not allowed"),
        (["manifest", f"$(touch {CANARY})", "x"], b"", 2, "is not allowed"),
        (["jobs", "--bundle", f"`touch {CANARY}`"], b"", 2, "is not a SHA-256 digest"),
        (["have"], b"[" * 100_000, 2, "arrays and objects nest 100000 deep"),
        (["commit", "r-p", "readings"], b'{"chunks": []}', 2, "an empty dataset cannot be committed"),
        (["put"], b"ab" * 32 + b" 5 extra\n", 2, "malformed chunk header"),
        ([f"touch {CANARY}"], b"", 2, "invalid choice"),
    ],
)
def test_a_real_runner_process_refuses_in_one_line(hub, args, stdin, code, message) -> None:
    result = process(hub, *args, stdin=stdin)
    assert result.code == code and message in error_line(result)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"z_threshold": NaN}', "parameter z_threshold of job daily_kpis must be a finite number"),
        (b'{"tz": "../../etc/passwd"}', "parameter tz of job daily_kpis '../../etc/passwd' is not a time zone"),
        (b'{"tz": "' + b"A" * 12_000_000 + b'"}', "parameters for daily_kpis are larger than 1 MiB"),
        (b'{"tz": ' + b"[" * 5000 + b"]" * 5000 + b"}", "are not valid JSON: arrays and objects nest 5001 deep"),
    ],
)
def test_params_through_the_bundles_own_runner_refuse_in_one_line(hub, body, message) -> None:
    """``params`` execs the bundle's runner; that process too answers with one short line."""
    result = process(hub, "params", "r-proc", "daily_kpis", "--bundle", hub.digest, stdin=body)
    line = error_line(result)
    assert result.code == protocol.EXIT_USAGE and message in line and len(line) < 300
    assert not (hub.root / "scratch" / "r-proc").exists()
