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
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from eastwest.west import bundle, jobs, protocol, wire
from eastwest.west.protocol import EXIT_MISSING, EXIT_USAGE, EXIT_VERIFY, SHA256_HEX

#: Set in the environment of a runner that runs from inside a verified bundle.
BUNDLE_ENV = "EASTWEST_BUNDLE"


class RunnerError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _name(value: str) -> str:
    try:
        return protocol.check_name("argument", value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def log(message: str, *args: object) -> None:
    print(f"[eastwest.west] {message % args if args else message}", file=sys.stderr, flush=True)


def run_dir(root: Path, run: str, *, create: bool = False) -> Path:
    path = root / "scratch" / run
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def store(root: Path) -> wire.ChunkStore:
    return wire.ChunkStore(root / "chunks")


def dataset_path(root: Path, run: str, name: str) -> Path:
    return run_dir(root, run) / f"{name}.dataset.json"


def _read_digests(raw: bytes) -> list[str]:
    try:
        digests = json.loads(raw or b"[]")
    except (ValueError, RecursionError) as exc:
        raise RunnerError(f"expected a JSON list of chunk digests: {exc}", EXIT_USAGE) from exc
    if not isinstance(digests, list) or not all(isinstance(d, str) and SHA256_HEX.fullmatch(d) for d in digests):
        raise RunnerError("expected a JSON list of hex SHA-256 chunk digests", EXIT_USAGE)
    return digests


def cmd_have(args: argparse.Namespace) -> int:
    chunks = store(args.root)
    wanted = _read_digests(sys.stdin.buffer.read())
    present = [d for d in dict.fromkeys(wanted) if chunks.verify(d) is not None]
    print(json.dumps(present), flush=True)
    log("%s of %s chunks already here and intact", len(present), len(set(wanted)))
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
        if ok:  # decode it now, while the link is busy, so the dataset check at commit is quick
            ok = chunks.count_rows(sha) is not None
            if not ok:
                chunks.path(sha).unlink(missing_ok=True)
        stored += ok
        rejected += not ok
        print(json.dumps({"sha256": sha, "ok": ok}), flush=True)
    log("stored %s chunks, rejected %s that failed verification", stored, rejected)
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    try:
        manifest = wire.DatasetManifest.from_json(sys.stdin.buffer.read())
        store(args.root).verify_dataset(manifest)
    except (wire.VerificationError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise RunnerError(f"dataset {args.name} failed verification: {exc}", EXIT_VERIFY) from exc
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
    return wire.load_dataset_manifest(path)


def cmd_manifest(args: argparse.Namespace) -> int:
    print(_dataset(args.root, args.run, args.name, "dataset").to_json(), flush=True)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    chunks = store(args.root)
    out = sys.stdout.buffer
    for sha in _read_digests(sys.stdin.buffer.readline()):
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
    except (bundle.BundleError, wire.VerificationError) as exc:
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


def cmd_params(args: argparse.Namespace) -> int:
    directory = _in_bundle(args, protocol.PARAMS, args.run, args.job, "--bundle", args.bundle)
    _, spec = _job_spec(directory, args.job)
    try:
        params = json.loads(sys.stdin.buffer.read() or b"{}")
    except (ValueError, RecursionError) as exc:
        raise RunnerError(f"parameters for {args.job} are not valid JSON: {exc}", EXIT_USAGE) from exc
    try:
        checked = jobs.check_params(spec, params)
    except jobs.JobError as exc:
        raise RunnerError(str(exc), EXIT_USAGE) from exc
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
    job = jobs.load_module(jobs_dir, args.job)
    rdir = run_dir(args.root, args.run)
    params_path = rdir / f"{args.job}.params.json"
    try:
        params = jobs.check_params(spec, json.loads(params_path.read_text()) if params_path.exists() else {})
    except (jobs.JobError, ValueError, RecursionError) as exc:
        raise RunnerError(f"stored parameters for {args.job} are not valid: {exc}", EXIT_USAGE) from exc
    chunks = store(args.root)
    frames = {}
    for name in spec.inputs:
        manifest = _dataset(args.root, args.run, name, "input")
        try:
            frame = pl.from_arrow(pa.Table.from_batches(list(chunks.batches(manifest))))
        except wire.VerificationError as exc:
            raise RunnerError(f"input {name} failed verification on disk ({exc}); ship it again", EXIT_VERIFY) from exc
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
    result = job.transform(**frames, params=params).collect()
    compute_seconds = time.monotonic() - started
    log("job %s produced %s rows in %.2fs", args.job, result.height, compute_seconds)

    table = result.to_arrow()
    manifest = wire.write_chunks(table.to_batches(max_chunksize=65536), table.schema, chunks)
    if not manifest.chunks:  # an empty result still carries its schema east
        manifest = wire.write_chunks([pa.RecordBatch.from_pylist([], schema=table.schema)], table.schema, chunks)
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
    for manifest in (args.root / "scratch").glob("*/*.dataset.json"):
        referenced.update(c.sha256 for c in wire.load_dataset_manifest(manifest).chunks)
    cutoff = time.time() - args.keep_hours * 3600
    for partial in (args.root / "chunks").rglob(".*.partial"):  # left by a process killed with SIGKILL
        if partial.stat().st_mtime < time.time() - 3600:
            partial.unlink(missing_ok=True)
    bundles = bundle.collect_garbage(args.root, args.keep_hours)
    if bundles:
        log("removed %s job bundles unused for %s hours", bundles, args.keep_hours)
    removed = 0
    for chunk in (args.root / "chunks").glob("*/*" + wire.SUFFIX):
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
    parser = argparse.ArgumentParser(prog="eastwest.west.runner", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the hub's data root")
    sub = parser.add_subparsers(dest="command", required=True)

    for command, func, helptext in (
        (protocol.HAVE, cmd_have, "list which of the digests on stdin are stored intact"),
        (protocol.PUT, cmd_put, "store framed chunks from stdin, verifying each"),
        (protocol.GET, cmd_get, "write the chunks listed on stdin to stdout, framed"),
    ):
        p = sub.add_parser(command, help=helptext)
        p.set_defaults(func=func)

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
    p.add_argument("--keep-hours", type=float, default=24.0, help="keep unreferenced chunks used this recently")
    p.set_defaults(func=cmd_cleanup)

    p = sub.add_parser(protocol.JOBS, help="list the jobs of a bundle")
    p.add_argument("--bundle", type=_digest, required=True)
    p.set_defaults(func=cmd_jobs)
    return parser


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind, so temporary files are removed by their finally blocks


def main(argv: list[str] | None = None) -> int:
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, _exit_on_signal)
    args = build_parser().parse_args(argv)
    args.root = args.root.resolve()
    try:
        return args.func(args)
    except RunnerError as exc:
        log("error: %s", exc)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
