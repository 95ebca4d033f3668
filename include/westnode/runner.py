"""The western-node runner: the only program the east side invokes on a hub.

Usage (every argument is validated; nothing is passed through a shell)::

    python -m westnode.runner --root ROOT receive RUN NAME SHA256 BYTES ROWS  < stream
    python -m westnode.runner --root ROOT stat RUN NAME
    python -m westnode.runner --root ROOT send RUN NAME                       > stream
    python -m westnode.runner --root ROOT params RUN JOB                      < params.json
    python -m westnode.runner --root ROOT run RUN JOB
    python -m westnode.runner --root ROOT cleanup RUN
    python -m westnode.runner --root ROOT jobs

Datasets of a run live in ``ROOT/scratch/RUN/NAME.arrows`` with a manifest beside them; they appear
under that name only after their digest, size and row count were verified. ``run`` executes a
registered job only, with parameters read from the run's ``JOB.params.json`` (data, not argv).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from westnode import wire
from westnode.jobs import UnknownJobError, load_job

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")

EXIT_USAGE = 2
EXIT_VERIFY = 3
EXIT_MISSING = 4


class RunnerError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _name(value: str) -> str:
    if not SAFE_NAME.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a safe name (letters, digits, '_', '.', '-')")
    return value


def _sha(value: str) -> str:
    if not SHA256.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a hex SHA-256 digest")
    return value


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a non-negative integer")
    return int(value)


def log(message: str, *args: object) -> None:
    print(f"[westnode] {message % args if args else message}", file=sys.stderr, flush=True)


def run_dir(root: Path, run: str, *, create: bool = False) -> Path:
    path = root / "scratch" / run
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def dataset(root: Path, run: str, name: str) -> Path:
    return run_dir(root, run) / f"{name}{wire.SUFFIX}"


def cmd_receive(args: argparse.Namespace) -> int:
    expected = wire.Manifest(sha256=args.sha256, bytes=args.bytes, rows=args.rows)
    path = run_dir(args.root, args.run, create=True) / f"{args.name}{wire.SUFFIX}"
    started = time.monotonic()
    try:
        got = wire.receive_to(path, sys.stdin.buffer, expected)
    except wire.VerificationError as exc:
        raise RunnerError(str(exc), EXIT_VERIFY) from exc
    elapsed = time.monotonic() - started
    log("received %s: %s rows, %s bytes in %.2fs, sha256 verified", args.name, got.rows, got.bytes, elapsed)
    print(got.to_json(), flush=True)
    return 0


def _verified(path: Path, what: str) -> wire.Manifest:
    """Re-verify a stored dataset against its manifest before anyone reads it."""
    if not path.exists():
        raise RunnerError(f"{what} {path.name} is not on this hub; ship it first", EXIT_MISSING)
    recorded = wire.load_manifest(path)
    try:
        wire.manifest_of(path).check_against(recorded, what="digest, size or rows differ")
    except wire.VerificationError as exc:
        raise RunnerError(
            f"{what} {path.name} failed verification on disk ({exc}); ship it again", EXIT_VERIFY
        ) from exc
    return recorded


def cmd_stat(args: argparse.Namespace) -> int:
    print(_verified(dataset(args.root, args.run, args.name), "dataset").to_json(), flush=True)
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    path = dataset(args.root, args.run, args.name)
    if not path.exists():
        raise RunnerError(f"dataset {path.name} is not on this hub", EXIT_MISSING)
    with open(path, "rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer, wire.CHUNK)
    sys.stdout.buffer.flush()
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    job = load_job(args.job)
    try:
        params = json.loads(sys.stdin.buffer.read() or b"{}")
    except json.JSONDecodeError as exc:
        raise RunnerError(f"parameters for {args.job} are not valid JSON: {exc}", EXIT_USAGE) from exc
    if not isinstance(params, dict):
        raise RunnerError(f"parameters for {args.job} must be a JSON object", EXIT_USAGE)
    unknown = sorted(set(params) - set(job.PARAMS))
    if unknown:
        raise RunnerError(
            f"job {args.job} does not take parameter(s) {', '.join(unknown)}; it takes {', '.join(sorted(job.PARAMS))}",
            EXIT_USAGE,
        )
    for key, value in params.items():
        default = job.PARAMS[key]
        expected = (int, float) if isinstance(default, float) else type(default)
        if not isinstance(value, expected) or isinstance(value, bool) != isinstance(default, bool):
            raise RunnerError(
                f"parameter {key} of job {args.job} must be {type(default).__name__}, not {type(value).__name__}",
                EXIT_USAGE,
            )
        if isinstance(value, list) and not all(isinstance(v, str) and SAFE_NAME.match(v) for v in value):
            raise RunnerError(f"parameter {key} of job {args.job} must be a list of plain names", EXIT_USAGE)
    target = run_dir(args.root, args.run, create=True) / f"{args.job}.params.json"
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(params, sort_keys=True))
    tmp.replace(target)
    log("stored parameters for %s: %s", args.job, json.dumps(params, sort_keys=True))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import polars as pl

    job = load_job(args.job)
    rdir = run_dir(args.root, args.run)
    params_path = rdir / f"{args.job}.params.json"
    params = json.loads(params_path.read_text()) if params_path.exists() else {}
    frames = {}
    for name in job.INPUTS:
        path = dataset(args.root, args.run, name)
        manifest = _verified(path, "input")
        log("input %s verified: %s rows, sha256 %s", name, manifest.rows, manifest.sha256[:12])
        frames[name] = pl.read_ipc_stream(path).lazy()

    started = time.monotonic()
    log("running job %s on run %s", args.job, args.run)
    result = job.transform(**frames, params=params).collect()
    compute_seconds = time.monotonic() - started
    log("job %s produced %s rows in %.2fs", args.job, result.height, compute_seconds)

    out = dataset(args.root, args.run, args.job)
    partial = wire.temp_path(out)
    try:
        table = result.to_arrow()
        with open(partial, "wb") as f:
            manifest = wire.write_stream(table.to_batches(max_chunksize=65536), table.schema, f)
        wire.save_manifest(out, manifest)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    (rdir / f"{args.job}.metrics.json").write_text(json.dumps({"compute_seconds": round(compute_seconds, 3)}))
    log("wrote %s: %s rows, %s bytes, sha256 %s", out.name, manifest.rows, manifest.bytes, manifest.sha256[:12])
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
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from westnode.jobs import REGISTRY

    print(json.dumps(sorted(REGISTRY)), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="westnode.runner", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the hub's data root")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("receive", help="receive a dataset on stdin and verify it")
    p.add_argument("run", type=_name)
    p.add_argument("name", type=_name)
    p.add_argument("sha256", type=_sha)
    p.add_argument("bytes", type=_count)
    p.add_argument("rows", type=_count)
    p.set_defaults(func=cmd_receive)

    for command, func, helptext in (
        ("stat", cmd_stat, "print a dataset's verified manifest"),
        ("send", cmd_send, "write a dataset to stdout"),
    ):
        p = sub.add_parser(command, help=helptext)
        p.add_argument("run", type=_name)
        p.add_argument("name", type=_name)
        p.set_defaults(func=func)

    for command, func, helptext in (
        ("params", cmd_params, "store a job's JSON parameters read from stdin"),
        ("run", cmd_run, "run a registered job"),
        ("metrics", cmd_metrics, "print a finished job's metrics"),
    ):
        p = sub.add_parser(command, help=helptext)
        p.add_argument("run", type=_name)
        p.add_argument("job", type=_name)
        p.set_defaults(func=func)

    p = sub.add_parser("cleanup", help="remove a run's scratch directory")
    p.add_argument("run", type=_name)
    p.set_defaults(func=cmd_cleanup)

    p = sub.add_parser("jobs", help="list registered jobs")
    p.set_defaults(func=cmd_jobs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.root = args.root.resolve()
    try:
        return args.func(args)
    except UnknownJobError as exc:
        log("refused: %s", exc)
        return EXIT_USAGE
    except RunnerError as exc:
        log("error: %s", exc)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
