"""The western-node runner: the only program the east side invokes on a hub.

Usage (every argument is validated; nothing is passed through a shell)::

    python -m eastwest.west.runner --root ROOT have               < ["sha256", ...]   # which chunks are here, intact
    python -m eastwest.west.runner --root ROOT put                < framed chunks     # store chunks, verify each
    python -m eastwest.west.runner --root ROOT commit RUN NAME    < dataset manifest  # verify all, then name it
    python -m eastwest.west.runner --root ROOT manifest RUN NAME                      # print a dataset's manifest
    python -m eastwest.west.runner --root ROOT get                < ["sha256", ...]   # framed chunks to stdout
    python -m eastwest.west.runner --root ROOT install-bundle RUN NAME --digest D     # unpack a shipped job bundle
    python -m eastwest.west.runner --root ROOT params RUN JOB --bundle D < params.json
    python -m eastwest.west.runner --root ROOT run RUN JOB --bundle D
    python -m eastwest.west.runner --root ROOT metrics RUN JOB
    python -m eastwest.west.runner --root ROOT cleanup RUN [--keep-hours H]
    python -m eastwest.west.runner --root ROOT jobs --bundle D

Chunks live once in ``ROOT/chunks`` under their SHA-256 (so data already here is never sent
again); a run's datasets are manifests in ``ROOT/scratch/RUN/NAME.dataset.json``, written only
after every chunk was verified. Job code arrives as a content-addressed bundle
(:mod:`eastwest.west.bundle`) in ``ROOT/bundles/DIGEST``; ``run`` hashes the bundle again, refuses
it if any file changed, and executes only a job of that bundle, with parameters read from the
run's ``JOB.params.json`` (data, not argv) and checked against what the job declares.

Every malformed request (arguments or stdin) is refused with one line ``[eastwest.west] error: …``
on stderr and an exit code of :mod:`eastwest.west.protocol` (its docstring lists them all): 2 for
a malformed request, 3 for data that does not verify, 4 for something not on the hub, 1 when the
job's own code raises, and 70 from the last-resort handler in :func:`main` for anything else.
JSON on stdin is refused before parsing when it is larger or nested deeper than the protocol's
limits (1 MiB of parameters, 64 MiB of digests or manifest, 16 levels); values from a request
appear in messages only as short excerpts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from eastwest.west import bundle, jobs, protocol, wire
from eastwest.west.protocol import (
    EXIT_INTERNAL,
    EXIT_JOB,
    EXIT_MISSING,
    EXIT_USAGE,
    EXIT_VERIFY,
    MAX_DIGESTS_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_PARAMS_BYTES,
    SHA256_HEX,
    excerpt,
)

#: Set in the environment of a runner that runs from inside a verified bundle.
BUNDLE_ENV = "EASTWEST_BUNDLE"


class RunnerError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line is a :class:`RunnerError`: one log line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")
        raise RunnerError(f"{message} (usage: {usage})", EXIT_USAGE)


def _name(value: str) -> str:
    try:
        return protocol.check_name("name", value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _root(value: str) -> Path:
    if not value or "\x00" in value:
        raise argparse.ArgumentTypeError(f"{excerpt(value)} is not a directory name")
    return Path(value)


def _hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours) or not 0 <= hours <= 1e6:  # a negative one would collect every chunk and bundle
        raise argparse.ArgumentTypeError(f"{excerpt(value)} is not a number of hours between 0 and 1e6")
    return hours


def log(message: str, *args: object) -> None:
    """One line on stderr, whatever the message holds (line breaks and control characters escaped)."""
    text = message % args if args else message
    print(f"[eastwest.west] {protocol.one_line(text)}", file=sys.stderr, flush=True)


def _read_stdin(limit: int, too_large: str, code: int, *, line: bool = False) -> bytes:
    """At most ``limit`` bytes of stdin (one line with ``line``); more is refused, not truncated."""
    source = sys.stdin.buffer
    raw = source.readline(limit + 1) if line else source.read(limit + 1)
    if len(raw) > limit:
        raise RunnerError(f"{too_large} larger than {limit >> 20} MiB ({limit} bytes), the limit", code)
    return raw


def run_dir(root: Path, run: str, *, create: bool = False) -> Path:
    path = root / "scratch" / run
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def store(root: Path) -> wire.ChunkStore:
    return wire.ChunkStore(root / "chunks")


def dataset_path(root: Path, run: str, name: str) -> Path:
    return run_dir(root, run) / f"{name}.dataset.json"


def _read_digests(*, line: bool = False) -> list[str]:
    raw = _read_stdin(MAX_DIGESTS_BYTES, "the list of chunk digests is", EXIT_USAGE, line=line)
    try:
        digests = protocol.load_json(raw or b"[]", max_bytes=MAX_DIGESTS_BYTES)
    except protocol.JSONInputError as exc:
        raise RunnerError(f"expected a JSON list of chunk digests: {exc}", EXIT_USAGE) from exc
    if not isinstance(digests, list) or not all(isinstance(d, str) and SHA256_HEX.fullmatch(d) for d in digests):
        raise RunnerError("expected a JSON list of hex SHA-256 chunk digests", EXIT_USAGE)
    return digests


def cmd_have(args: argparse.Namespace) -> int:
    chunks = store(args.root)
    wanted = _read_digests()
    if getattr(args, "stored", False):  # placement's question: cheap, the digest is checked when shipping
        present = [d for d in dict.fromkeys(wanted) if chunks.path(d).exists()]
    else:
        present = [d for d in dict.fromkeys(wanted) if chunks.verify(d) is not None]
    print(json.dumps(present), flush=True)
    log("%s of %s chunks already here%s", len(present), len(set(wanted)), "" if args.stored else " and intact")
    return 0


def cmd_put(args: argparse.Namespace) -> int:
    chunks = store(args.root)
    source = sys.stdin.buffer
    stored = rejected = 0
    while (header := _frame_header(source)) is not None:
        sha, size = header
        if size > wire.MAX_CHUNK_BYTES:
            raise RunnerError(
                f"chunk {sha[:12]} claims {size} bytes; chunks are at most {wire.MAX_CHUNK_BYTES}", EXIT_VERIFY
            )
        try:
            ok = chunks.receive(sha, size, source)
        except wire.VerificationError as exc:
            raise RunnerError(str(exc), EXIT_VERIFY) from exc
        if ok:  # its row count now (from IPC metadata), so that commit need not read it again
            ok = chunks.count_rows(sha) is not None
            if not ok:
                chunks.path(sha).unlink(missing_ok=True)
        stored += ok
        rejected += not ok
        print(json.dumps({"sha256": sha, "ok": ok}), flush=True)
    log("stored %s chunks, rejected %s that failed verification", stored, rejected)
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    failed = f"dataset {args.name} failed verification:"
    raw = _read_stdin(MAX_MANIFEST_BYTES, f"{failed} its manifest is", EXIT_VERIFY)
    try:
        manifest = wire.DatasetManifest.from_dict(protocol.load_json(raw, max_bytes=MAX_MANIFEST_BYTES))
    except (wire.VerificationError, protocol.JSONInputError) as exc:
        raise RunnerError(f"{failed} {exc}", EXIT_VERIFY) from exc
    if not manifest.chunks:  # a job could not read it: even an empty table travels as a chunk with its schema
        raise RunnerError(
            f"dataset {args.name} is empty: its manifest names no chunks, and an empty dataset cannot be "
            "committed (an empty table travels as one chunk that carries its schema)",
            EXIT_USAGE,
        )
    try:
        store(args.root).verify_dataset(manifest, rehash=False)  # have and put hashed every byte once
    except wire.VerificationError as exc:
        raise RunnerError(f"{failed} {exc}", EXIT_VERIFY) from exc
    wire.save_dataset_manifest(dataset_path(args.root, args.run, args.name), manifest)
    log(
        "dataset %s verified: %s chunks, %s rows, %s bytes",
        args.name,
        len(manifest.chunks),
        manifest.rows,
        manifest.bytes,
    )
    print(json.dumps(manifest.summary()), flush=True)
    return 0


def _dataset(root: Path, run: str, name: str, what: str) -> wire.DatasetManifest:
    path = dataset_path(root, run, name)
    if not path.exists():
        raise RunnerError(f"{what} {name} is not on this hub for run {run}; ship it first", EXIT_MISSING)
    return _load_manifest(path)


def _load_manifest(path: Path) -> wire.DatasetManifest:
    """A manifest this runner wrote; one damaged on the hub is refused like a damaged chunk."""
    try:
        return wire.load_dataset_manifest(path)
    except (wire.VerificationError, ValueError) as exc:
        raise RunnerError(
            f"the manifest {path.name} of run {path.parent.name} on this hub is damaged: {exc}; ship it again",
            EXIT_VERIFY,
        ) from exc


def cmd_manifest(args: argparse.Namespace) -> int:
    print(_dataset(args.root, args.run, args.name, "dataset").to_json(), flush=True)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    chunks = store(args.root)
    out = sys.stdout.buffer
    for sha in _read_digests(line=True):
        path = chunks.path(sha)
        if not path.exists():
            raise RunnerError(f"chunk {sha[:12]} is not on this hub", EXIT_MISSING)
        out.write(protocol.frame_header(sha, path.stat().st_size))
        with open(path, "rb") as f:
            shutil.copyfileobj(f, out, wire.CHUNK)
    out.write(protocol.END)
    out.flush()
    return 0


def _frame_header(source: Any) -> tuple[str, int] | None:
    try:
        return protocol.read_frame_header(source)
    except protocol.FrameError as exc:
        raise RunnerError(str(exc), EXIT_USAGE) from exc


def _digest(value: str) -> str:
    if not SHA256_HEX.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value[:80]!r} is not a SHA-256 digest")
    return value


def _bundle_dir(root: Path, digest: str) -> Path:
    """The installed bundle, re-hashed; a bundle changed on this hub is refused."""
    try:
        return bundle.verify_installed(root, digest)
    except FileNotFoundError as exc:
        raise RunnerError(f"{exc}; ship it first", EXIT_MISSING) from exc
    except bundle.BundleError as exc:
        raise RunnerError(f"refused: {exc}", EXIT_VERIFY) from exc


def _job_spec(directory: Path, job: str) -> tuple[Path, jobs.JobSpec]:
    """A job's spec from a bundle directory that :func:`_in_bundle` verified in this process."""
    jobs_dir = directory / "jobs"
    try:
        return jobs_dir, jobs.read_spec(jobs_dir, job)
    except jobs.JobError as exc:
        raise RunnerError(f"refused: {exc}", EXIT_USAGE) from exc


def cmd_install_bundle(args: argparse.Namespace) -> int:
    manifest = _dataset(args.root, args.run, args.name, "bundle")
    try:
        files = bundle.from_batches(store(args.root).batches(manifest))
        directory = bundle.install(args.root, args.digest, files)
    except (bundle.BundleError, wire.VerificationError, TypeError, ValueError) as exc:  # pyarrow's: Arrow*Error
        raise RunnerError(f"bundle {args.digest[:12]} refused: {exc}", EXIT_VERIFY) from exc
    log("job bundle %s installed in %s (%s files)", args.digest[:12], directory, len(files))
    return 0


def _in_bundle(args: argparse.Namespace, *command: str) -> Path:
    """Verify the bundle; unless this process already runs from it, exec the bundle's own runner.

    ``-P`` keeps the working directory off ``sys.path`` and the environment names only the
    verified bundle, so the code that continues is the code the east shipped.
    """
    directory = _bundle_dir(args.root, args.bundle)
    here = Path(__file__).resolve()
    if here.is_relative_to(directory.resolve()):
        return directory
    if os.environ.get(BUNDLE_ENV) == args.bundle:  # exec'ed once already and still not in the bundle
        raise RunnerError(f"refused: the runner of bundle {args.bundle[:12]} did not load from it", EXIT_VERIFY)
    argv = [sys.executable, "-B", "-P", "-m", "eastwest.west.runner", "--root", str(args.root), *command]
    env = {**os.environ, "PYTHONPATH": str(directory), BUNDLE_ENV: args.bundle, "PYTHONDONTWRITEBYTECODE": "1"}
    sys.stderr.flush()
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)
    raise AssertionError("unreachable")  # pragma: no cover


def _params(spec: jobs.JobSpec, raw: bytes, what: str) -> dict[str, Any]:
    """Parameters from JSON (stdin, or the stored file), checked against what the job declares."""
    try:
        params = protocol.load_json(raw or b"{}", max_bytes=MAX_PARAMS_BYTES)
    except protocol.JSONInputError as exc:
        raise RunnerError(f"{what} for {spec.name} are not valid JSON: {exc}", EXIT_USAGE) from exc
    try:
        return jobs.check_params(spec, params)
    except jobs.JobError as exc:
        raise RunnerError(str(exc), EXIT_USAGE) from exc


def cmd_params(args: argparse.Namespace) -> int:
    directory = _in_bundle(args, protocol.PARAMS, args.run, args.job, "--bundle", args.bundle)
    _, spec = _job_spec(directory, args.job)
    raw = _read_stdin(MAX_PARAMS_BYTES, f"parameters for {args.job} are", EXIT_USAGE)
    checked = _params(spec, raw, "parameters")
    target = run_dir(args.root, args.run, create=True) / f"{args.job}.params.json"
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(checked, sort_keys=True))
    tmp.replace(target)
    log("stored %s parameters for %s (%s)", len(checked), args.job, ", ".join(sorted(checked)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    directory = _in_bundle(args, protocol.RUN, args.run, args.job, "--bundle", args.bundle)
    return _run_job(args, directory)


def _run_job(args: argparse.Namespace, directory: Path) -> int:
    import polars as pl
    import pyarrow as pa

    jobs_dir, spec = _job_spec(directory, args.job)
    rdir = run_dir(args.root, args.run)
    params_path = rdir / f"{args.job}.params.json"
    raw = params_path.read_bytes()[: MAX_PARAMS_BYTES + 1] if params_path.exists() else b"{}"
    params = _params(spec, raw, "stored parameters")
    chunks = store(args.root)
    frames = {}
    grouped: tuple[str, wire.DatasetManifest] | None = None
    for name in spec.inputs:
        manifest = _dataset(args.root, args.run, name, "input")
        if not manifest.chunks:  # committed before empty datasets were refused
            raise RunnerError(f"input {name} is an empty dataset (no chunks, no schema); ship it again", EXIT_VERIFY)
        if spec.partition_by and manifest.raw_bytes > PARTITION_RAW_BYTES:
            grouped = (name, manifest)  # read group by group below, never whole
            continue
        try:
            frame = pl.from_arrow(pa.Table.from_batches(list(chunks.batches(manifest))))
        except wire.VerificationError as exc:
            raise RunnerError(f"input {name} failed verification on disk ({exc}); ship it again", EXIT_VERIFY) from exc
        except (TypeError, ValueError) as exc:  # pyarrow's ArrowInvalid / ArrowTypeError: chunks of two schemas
            raise RunnerError(f"input {name} cannot be read as one table: {exc}", EXIT_VERIFY) from exc
        if not isinstance(frame, pl.DataFrame) or frame.height != manifest.rows:
            raise RunnerError(f"input {name} does not have the {manifest.rows} rows its manifest says", EXIT_VERIFY)
        log(
            "input %s verified: %s chunks, %s rows, sha256 %s",
            name,
            len(manifest.chunks),
            manifest.rows,
            manifest.sha256[:12],
        )
        frames[name] = frame.lazy()

    started = time.monotonic()
    log("running job %s of bundle %s on run %s", args.job, args.bundle[:12], args.run)
    spill = rdir / f"{args.job}.groups"
    try:
        job = jobs.load_module(jobs_dir, args.job)
        if grouped is None:
            results: Iterator[Any] = iter([job.transform(**frames, params=params).collect()])
        else:
            parts = _spill_groups(chunks, *grouped, spec.partition_by, spill)
            results = (job.transform(**{grouped[0]: part.lazy()}, params=params).collect() for part in parts)
        first = next(results)
        schema = first.to_arrow().schema
        produced = {"rows": 0}

        def batches() -> Iterator[Any]:
            for result in itertools.chain([first], results):
                produced["rows"] += result.height
                yield from result.to_arrow().cast(schema).to_batches(max_chunksize=65536)

        manifest = wire.write_chunks(batches(), schema, chunks)
    except jobs.JobError as exc:
        raise RunnerError(f"refused: {exc}", EXIT_USAGE) from exc
    except RunnerError:
        raise
    except Exception as exc:  # the job's own code: say what and where in one line
        raise RunnerError(_job_failure(args.job, jobs_dir, exc), EXIT_JOB) from exc
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    compute_seconds = time.monotonic() - started
    log("job %s produced %s rows in %.2fs", args.job, produced["rows"], compute_seconds)

    if not manifest.chunks:  # an empty result still carries its schema east
        manifest = wire.write_chunks([pa.RecordBatch.from_pylist([], schema=schema)], schema, chunks)
    wire.save_dataset_manifest(dataset_path(args.root, args.run, args.job), manifest)
    metrics = {"compute_seconds": round(compute_seconds, 3), "bundle": args.bundle}
    (rdir / f"{args.job}.metrics.json").write_text(json.dumps(metrics))
    log(
        "wrote %s: %s rows in %s chunks, %s bytes, sha256 %s",
        args.job,
        manifest.rows,
        len(manifest.chunks),
        manifest.bytes,
        manifest.sha256[:12],
    )
    return 0


#: A job that declares ``PARTITION_BY`` runs group by group when its input is larger than this (raw
#: Arrow bytes): groups of about this size (1M telemetry readings), so the hub's memory for the job
#: stays under 1 GB whatever the input's size (0.69 GB at 10M readings, 0.85 GB at 50M; measured in
#: BENCHMARKS.md, "Hub memory").
PARTITION_RAW_BYTES = 64 << 20


def _spill_groups(
    chunks: wire.ChunkStore, name: str, manifest: wire.DatasetManifest, keys: tuple[str, ...], spill: Path
) -> Iterator[Any]:
    """Split input ``name`` into groups of about ``PARTITION_RAW_BYTES`` by a hash of ``keys`` (rows
    with the same keys land in one group), spilled to the run's directory as lz4 Arrow streams;
    yield each group as a DataFrame, one at a time. The input is verified as it is read."""
    import polars as pl
    import pyarrow as pa

    groups = max(2, math.ceil(manifest.raw_bytes / PARTITION_RAW_BYTES))
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    writers: dict[int, Any] = {}
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    rows = 0
    try:
        for batch in chunks.batches(manifest):
            rows += batch.num_rows
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            missing = [k for k in keys if k not in frame.columns]
            if missing:
                raise RunnerError(f"input {name} has no column {missing[0]!r}, which PARTITION_BY names", EXIT_JOB)
            bucket = (pl.struct(list(keys)).hash(seed=0) % groups).alias("__group")
            for (group,), part in (
                frame.with_columns(bucket).partition_by("__group", as_dict=True, include_key=False).items()
            ):
                table = part.to_arrow()
                if group not in writers:
                    writers[group] = pa.ipc.new_stream(str(spill / f"{group}.arrows"), table.schema, options=options)
                writers[group].write_table(table)
    except wire.VerificationError as exc:
        raise RunnerError(f"input {name} failed verification on disk ({exc}); ship it again", EXIT_VERIFY) from exc
    finally:
        for writer in writers.values():
            writer.close()
    if rows != manifest.rows:
        raise RunnerError(f"input {name} does not have the {manifest.rows} rows its manifest says", EXIT_VERIFY)
    log("input %s verified: %s rows, run in %s groups of %s", name, rows, len(writers), ", ".join(keys))
    for group in sorted(writers):
        path = spill / f"{group}.arrows"
        part = pl.read_ipc_stream(path)
        path.unlink()
        yield part


def _job_failure(job: str, jobs_dir: Path, exc: BaseException) -> str:
    """``job J failed: Type: message (jobs/J.py line N)``, N the job's innermost line in the traceback."""
    source = str((jobs_dir / f"{job}.py").resolve())
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if str(Path(f.filename).resolve()) == source]
    where = f" (jobs/{job}.py line {lines[-1]})" if lines else ""
    return f"job {job} failed: {type(exc).__name__}: {exc}{where}"


def cmd_metrics(args: argparse.Namespace) -> int:
    path = run_dir(args.root, args.run) / f"{args.job}.metrics.json"
    print(path.read_text() if path.exists() else "{}", flush=True)
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    path = run_dir(args.root, args.run)
    if path.exists():
        shutil.rmtree(path)
        log("removed scratch of run %s", args.run)
    # Chunks no run references and nobody used for --keep-hours go; recent ones stay so that a rerun
    # of the same data sends nothing.
    referenced: set[str] = set()
    for manifest in (args.root / "scratch").glob("*/*.dataset.json"):  # a damaged one stops the collection
        referenced.update(c.sha256 for c in _load_manifest(manifest).chunks)
    cutoff = time.time() - args.keep_hours * 3600
    for partial in (args.root / "chunks").rglob(".*.partial"):  # left by a process killed with SIGKILL
        if partial.stat().st_mtime < time.time() - 3600:
            partial.unlink(missing_ok=True)
    bundles = bundle.collect_garbage(args.root, args.keep_hours)
    if bundles:
        log("removed %s job bundles unused for %s hours", bundles, args.keep_hours)
    removed = 0
    for chunk in store(args.root).files():
        if chunk.stem not in referenced and chunk.stat().st_mtime < cutoff:
            chunk.unlink(missing_ok=True)
            chunk.with_suffix(".rows").unlink(missing_ok=True)
            removed += 1
    if removed:
        log("garbage-collected %s chunks unused for %s hours", removed, args.keep_hours)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    directory = _in_bundle(args, protocol.JOBS, "--bundle", args.bundle)
    print(json.dumps(jobs.job_names(directory / "jobs")), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="eastwest.west.runner", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=_root, required=True, help="the hub's data root")
    sub = parser.add_subparsers(dest="command", required=True)

    for command, func, helptext in (
        (protocol.HAVE, cmd_have, "list which of the digests on stdin are stored intact"),
        (protocol.PUT, cmd_put, "store framed chunks from stdin, verifying each"),
        (protocol.GET, cmd_get, "write the chunks listed on stdin to stdout, framed"),
    ):
        p = sub.add_parser(command, help=helptext)
        p.set_defaults(func=func, stored=False)
        if command == protocol.HAVE:
            p.add_argument("--stored", action="store_true", help="only check that each is stored (no re-hash)")

    for command, func, helptext in (
        (protocol.COMMIT, cmd_commit, "verify a dataset manifest from stdin and name it"),
        (protocol.MANIFEST, cmd_manifest, "print a dataset's manifest"),
    ):
        p = sub.add_parser(command, help=helptext)
        p.add_argument("run", type=_name)
        p.add_argument("name", type=_name)
        p.set_defaults(func=func)

    p = sub.add_parser(protocol.INSTALL_BUNDLE, help="unpack a shipped job bundle after verifying every file")
    p.add_argument("run", type=_name)
    p.add_argument("name", type=_name)
    p.add_argument("--digest", type=_digest, required=True)
    p.set_defaults(func=cmd_install_bundle)

    for command, func, helptext in (
        (protocol.PARAMS, cmd_params, "store a job's JSON parameters read from stdin, checked against the job"),
        (protocol.RUN, cmd_run, "run a job of a verified bundle"),
    ):
        p = sub.add_parser(command, help=helptext)
        p.add_argument("run", type=_name)
        p.add_argument("job", type=_name)
        p.add_argument("--bundle", type=_digest, required=True)
        p.set_defaults(func=func)

    p = sub.add_parser(protocol.METRICS, help="print a finished job's metrics")
    p.add_argument("run", type=_name)
    p.add_argument("job", type=_name)
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser(protocol.CLEANUP, help="remove a run's scratch directory and old unused chunks")
    p.add_argument("run", type=_name)
    p.add_argument("--keep-hours", type=_hours, default=24.0, help="keep unreferenced chunks used this recently")
    p.set_defaults(func=cmd_cleanup)

    p = sub.add_parser(protocol.JOBS, help="list the jobs of a bundle")
    p.add_argument("--bundle", type=_digest, required=True)
    p.set_defaults(func=cmd_jobs)
    return parser


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind, so temporary files are removed by their finally blocks


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (the table in :mod:`eastwest.west.protocol`)."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, _exit_on_signal)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help: printed, nothing to do (errors raise RunnerError)
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        try:
            args.root = args.root.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop is a RuntimeError before Python 3.13
            raise RunnerError(f"--root {excerpt(str(args.root))} cannot be resolved: {exc}", EXIT_USAGE) from exc
        return args.func(args)
    except RunnerError as exc:
        log("error: %s", exc)
        return exc.code
    except Exception as exc:  # last resort: a bug or the environment (disk full), still one line
        if protocol.disk_full(exc):
            log("error: the hub's disk is full (%s); free space on the hub, then retry", getattr(exc, "strerror", exc))
            return EXIT_INTERNAL
        log("error: internal error, %s: %s", type(exc).__name__, exc)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
