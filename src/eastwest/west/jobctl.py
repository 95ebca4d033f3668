"""Detached jobs on a hub: submit, status, log, kill, probe. No remote shell is involved.

The east's key runs only the runner (a forced command), so the compute step cannot use a shell
wrapper like ``SSHRemoteJobOperator``'s. The runner detaches jobs itself, with the same properties::

    submit RUN JOB --bundle D      # start the job in a new session (its own process group); idempotent
    status RUN JOB                 # JSON: state running | succeeded | failed | missing, exit code, message
    log RUN JOB [--offset N]       # the job's output from byte N (at most LOG_CHUNK bytes)
    kill RUN JOB                   # SIGTERM the whole process group, SIGKILL after KILL_GRACE seconds
    probe                          # JSON: the hub's slots, jobs running and queued, load, free disk and
                                   # memory, limits and installed bundles, for placement (cheap)

``submit`` starts a supervisor (``supervise``, never reachable through the forced command) as a
session leader. The supervisor runs ``runner run`` under the hub's resource limits, then records the
exit code and a message in ``scratch/RUN/JOB.job/exit.json``; output goes to ``JOB.job/log``. The
supervisor's pid and start time identify the job, so a reused pid is never taken for it.

Resource limits are the hub's, declared by its operator in ``ROOT/limits.json`` (``max_memory_mb``,
``max_cpu_seconds``; either may be omitted), applied as rlimits to the job; a job that hits one fails
with a message naming the limit. ``slots`` there (default: the hub's CPU count) is how many jobs run
at once: before it starts the job, the supervisor takes a slot, an ``flock`` on
``scratch/.slots/N.lock`` that it holds until the job ends (the kernel releases it if the supervisor
dies). While every slot is taken the job is *queued*: its status stays ``running`` with ``queued``
true, a ``queued`` marker sits in its directory and a kill ends it before it ever ran. The slot taken
is recorded in ``JOB.job/slot``, and every start and end of a job in a slot is appended to
``ROOT/log/slots.log`` as one JSON line (``event``, ``run``, ``job``, ``slot``, ``at``, ``pid``).

``exit.json`` (and so a finished job's status) also says what the job cost: ``core_seconds``, the CPU
time (user + system) of the job and the processes it waited for, measured by the kernel
(``wait4``); ``queued_seconds``, its wait for a slot; ``seconds``, its running time in the slot.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eastwest.west import protocol
from eastwest.west.protocol import EXIT_MISSING, EXIT_USAGE
from eastwest.west.runner import ArgumentParser, RunnerError, _digest, _name, _root, log, store  # its argument checks

SUBMIT = "submit"
STATUS = "status"
LOG = "log"
KILL = "kill"
PROBE = "probe"
SUPERVISE = "supervise"
#: The commands the forced command accepts from the east (``supervise`` is internal).
COMMANDS = (SUBMIT, STATUS, LOG, KILL, PROBE)
#: A status request waits at most this long for the job to end (``status --wait``), checking every WAIT_STEP s.
MAX_WAIT = 30.0
WAIT_STEP = 0.05
#: Version of what job control answers (the commands and their JSON); the probe reports it.
PROTOCOL_VERSION = 1

LOG_CHUNK = 256 * 1024
KILL_GRACE = 5.0
LIMITS_FILE = "limits.json"
#: How often a queued job tries the hub's slots again (seconds).
SLOT_POLL = 0.2
#: Where each start and end of a job in a slot is appended (under ``ROOT/log``, which the hub user owns).
SLOTS_LOG = "slots.log"
#: The probe lists at most this many installed bundles, most recently used first.
PROBE_BUNDLES = 20

RUNNING, SUCCEEDED, FAILED, MISSING = "running", "succeeded", "failed", "missing"


class JobError(RunnerError):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message, code)


def job_dir(root: Path, run: str, job: str) -> Path:
    return root / "scratch" / protocol.check_name("run key", run) / f"{protocol.check_name('job', job)}.job"


def slots_dir(root: Path) -> Path:
    """Where the slot locks live: under ``scratch``, which the hub user owns (no run key starts with '.')."""
    return root / "scratch" / ".slots"


def hub_limits(root: Path) -> dict[str, int]:
    """The hub's declared limits (``ROOT/limits.json``); only positive integers count.

    ``max_memory_mb`` and ``max_cpu_seconds`` bound each job (rlimits); ``slots`` bounds how many
    jobs run at once (see :func:`slot_count`).
    """
    try:
        raw = json.loads((root / LIMITS_FILE).read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise JobError(f"{root / LIMITS_FILE} is not valid JSON ({exc}); the hub's operator must fix it", 1) from exc
    limits = {}
    for key in ("max_memory_mb", "max_cpu_seconds", "slots"):
        value = raw.get(key) if isinstance(raw, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            limits[key] = value
    return limits


def slot_count(limits: dict[str, int]) -> int:
    """How many jobs may run at once on the hub: ``slots`` of its limits, else its CPU count."""
    return limits.get("slots") or os.cpu_count() or 1


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _supervisor(directory: Path) -> int | None:
    """The pid of the job's supervisor if it is still the process that was started, else None."""
    try:
        pid_text, started = (directory / "pid").read_text().split()
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return None
    return pid if _start_time(pid) == started else None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, sort_keys=True))
    tmp.replace(path)


def state_of(root: Path, run: str, job: str) -> dict[str, Any]:
    directory = job_dir(root, run, job)
    log_file = directory / "log"
    size = log_file.stat().st_size if log_file.exists() else 0
    if (directory / "exit.json").exists():
        ended = json.loads((directory / "exit.json").read_text())
        code = ended.get("exit_code")
        if code == 0 and not _result_whole(root, run, job):
            return {
                **ended,
                "state": FAILED,
                "message": f"the result of job {job} is no longer whole on this hub (a chunk was damaged or "
                "removed); run the job again",
                "log_size": size,
            }
        return {"state": SUCCEEDED if code == 0 else FAILED, **ended, "log_size": size}
    if not (directory / "pid").exists():
        return {"state": MISSING, "exit_code": None, "message": f"no job {job} was submitted for run {run}"}
    pid = _supervisor(directory)
    if pid is not None:
        queued = _queued(directory)
        message = "queued for a hub slot" if queued else "running"
        return {"state": RUNNING, "exit_code": None, "message": message, "queued": queued, "log_size": size, "pid": pid}
    return {
        "state": FAILED,
        "exit_code": None,
        "message": "the job's supervisor ended without recording an exit code (killed with SIGKILL, or the hub restarted)",
        "log_size": size,
    }


def _queued(directory: Path) -> bool:
    """Whether the job waits for a slot (the supervisor writes ``slot`` before it removes ``queued``)."""
    return (directory / "queued").exists() and not (directory / "slot").exists()


def _result_whole(root: Path, run: str, job: str) -> bool:
    """Whether the job's result dataset is named and every chunk of it is still stored (no re-hash)."""
    from eastwest.west import runner, wire

    path = runner.dataset_path(root, run, job)
    try:
        manifest = wire.load_dataset_manifest(path)
    except Exception:  # missing or damaged: not a result a fetch could use
        return False
    chunks = runner.store(root)
    return all(chunks.path(chunk.sha256).exists() for chunk in manifest.chunks)


# -- commands ---------------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    from eastwest.west import bundle, jobs

    try:
        directory = bundle.verify_installed(args.root, args.bundle)
    except FileNotFoundError as exc:
        raise JobError(f"{exc}; ship it first", EXIT_MISSING) from exc
    except bundle.BundleError as exc:
        raise JobError(f"refused: {exc}", protocol.EXIT_VERIFY) from exc
    try:
        jobs.read_spec(directory / "jobs", args.job)
    except jobs.JobError as exc:
        raise JobError(f"refused: {exc}") from exc
    jdir = job_dir(args.root, args.run, args.job)
    jdir.mkdir(parents=True, exist_ok=True)
    with open(jdir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two submits at once start one job
        current = state_of(args.root, args.run, args.job)
        if current["state"] == RUNNING:
            log("job %s of run %s is already running; not starting a second one", args.job, args.run)
            print(json.dumps(current), flush=True)
            return 0
        for name in ("exit.json", "pid", "log", "slot", "queued"):
            (jdir / name).unlink(missing_ok=True)
        argv = [sys.executable, "-B", "-P", "-m", "eastwest.west.jobctl", "--root", str(args.root)]
        argv += [SUPERVISE, args.run, args.job, "--bundle", args.bundle]
        with open(jdir / "log", "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=jdir,
                start_new_session=True,  # its own session and process group: survives the SSH session
                close_fds=True,
            )
        started = None
        for _ in range(100):
            started = _start_time(proc.pid)
            if started is not None:
                break
            time.sleep(0.01)
        tmp = jdir / "pid.tmp"
        tmp.write_text(f"{proc.pid} {started}\n")
        tmp.replace(jdir / "pid")
    log("submitted job %s of run %s (bundle %s): process group %s", args.job, args.run, args.bundle[:12], proc.pid)
    print(json.dumps({"state": RUNNING, "pid": proc.pid}), flush=True)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The job's state; with ``--wait S``, answered as soon as the job ends (so the east notices at
    once instead of at its next poll), when its log has grown for a second, or after S seconds."""
    started = time.monotonic()
    state = state_of(args.root, args.run, args.job)
    size = state.get("log_size")
    while state["state"] == RUNNING and time.monotonic() - started < args.wait:
        time.sleep(WAIT_STEP)
        state = state_of(args.root, args.run, args.job)
        if state.get("log_size") != size and time.monotonic() - started >= 1.0:
            break
    print(json.dumps(state), flush=True)
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    path = job_dir(args.root, args.run, args.job) / "log"
    if not path.exists():
        raise JobError(f"job {args.job} of run {args.run} has no log on this hub", EXIT_MISSING)
    with open(path, "rb") as source:
        source.seek(args.offset)
        sys.stdout.buffer.write(source.read(args.limit))
    sys.stdout.flush()
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    jdir = job_dir(args.root, args.run, args.job)
    pid = _supervisor(jdir)
    if pid is None:
        log("job %s of run %s is not running; nothing to kill", args.job, args.run)
        return 0
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.05)
    if _group_alive(pid):
        os.killpg(pid, signal.SIGKILL)
        log("job %s of run %s did not stop within %.0fs; killed its process group", args.job, args.run, KILL_GRACE)
    if not (jdir / "exit.json").exists():
        _write_json(jdir / "exit.json", {"exit_code": -signal.SIGKILL, "message": "killed on request"})
    log("killed job %s of run %s (process group %s)", args.job, args.run, pid)
    return 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cached_chunks(root: Path) -> dict[str, int]:
    """How many verified chunks the hub stores, and their bytes (what later runs need not send)."""
    count = size = 0
    for chunk in store(root).files():
        try:
            size += chunk.stat().st_size
            count += 1
        except OSError:
            continue  # removed by a clean-up meanwhile
    return {"chunks": count, "bytes": size}


def cmd_probe(args: argparse.Namespace) -> int:
    """What placement asks a hub before choosing it: one JSON object, from files and /proc only."""
    import eastwest

    running = queued = 0
    for directory in (args.root / "scratch").glob("*/*.job"):
        if (directory / "exit.json").exists() or _supervisor(directory) is None:
            continue
        if _queued(directory):
            queued += 1
        elif (directory / "slot").exists():
            running += 1
    limits = hub_limits(args.root)
    status = {
        "version": str(getattr(eastwest, "__version__", PROTOCOL_VERSION)),
        "protocol": PROTOCOL_VERSION,
        "slots": slot_count(limits),
        "running": running,
        "queued": queued,
        "load1": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count() or 1,
        "free_disk_bytes": shutil.disk_usage(args.root).free,
        "free_memory_bytes": _available_memory(),
        "limits": limits,
        "bundles": _installed_bundles(args.root)[:PROBE_BUNDLES],
        "cache": _cached_chunks(args.root),
        "time": time.time(),
    }
    print(json.dumps(status), flush=True)
    return 0


def _available_memory() -> int:
    """Bytes of memory the kernel could give a new job without swapping (``MemAvailable``)."""
    with open("/proc/meminfo") as source:
        for line in source:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _installed_bundles(root: Path) -> list[str]:
    """Digests of the installed job bundles, most recently used first (a run's verify touches its bundle)."""
    from eastwest.west.protocol import SHA256_HEX

    found = []
    for entry in os.scandir(root / "bundles") if (root / "bundles").is_dir() else ():
        if SHA256_HEX.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            found.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
    return [name for _, name in sorted(found, reverse=True)]


def _apply_limits(limits: dict[str, int]) -> None:
    if "max_memory_mb" in limits:
        size = limits["max_memory_mb"] * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    if "max_cpu_seconds" in limits:
        seconds = limits["max_cpu_seconds"]
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))  # SIGXCPU, then SIGKILL


def describe_exit(code: int, limits: dict[str, int], tail: str, killed: bool) -> str:
    """Why a job ended, naming the hub's limit when it hit one."""
    if code == 0:
        return "the job succeeded"
    if killed:
        return "killed on request"
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and "max_cpu_seconds" in limits):
        return (
            f"the job used the hub's CPU-time limit of {limits.get('max_cpu_seconds')} s (max_cpu_seconds in "
            f"{LIMITS_FILE}) and was stopped; give it less data per run or run it on a hub with a higher limit"
        )
    out_of_memory = "MemoryError" in tail or "memory allocation of" in tail or code == -signal.SIGABRT
    if "max_memory_mb" in limits and out_of_memory:
        return (
            f"the job exceeded the hub's memory limit of {limits['max_memory_mb']} MB (max_memory_mb in "
            f"{LIMITS_FILE}) and was stopped; give it less data per run or run it on a hub with a higher limit"
        )
    if "No space left on device" in tail or "disk is full" in tail:
        return "the hub's disk is full (No space left on device); free space on the hub, then run the job again"
    if code < 0:
        return f"the job was ended by signal {signal.Signals(-code).name}"
    return f"the job exited with code {code}"


def cmd_supervise(args: argparse.Namespace) -> int:
    jdir = job_dir(args.root, args.run, args.job)
    limits = hub_limits(args.root)
    stop_signal = 0

    def on_signal(signum: int, _frame: object) -> None:  # the group got it too; record why the job ends
        nonlocal stop_signal
        stop_signal = signum

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, on_signal)
    submitted = time.monotonic()
    taken = _wait_for_slot(args.root, jdir, slot_count(limits), lambda: stop_signal != 0)
    queued_seconds = round(time.monotonic() - submitted, 3)
    if taken is None or stop_signal:  # killed while queued: the job never started
        if taken is not None:
            os.close(taken[1])
        (jdir / "queued").unlink(missing_ok=True)
        log("killed on request while queued for a hub slot")
        _write_json(
            jdir / "exit.json",
            {
                "exit_code": -stop_signal,
                "message": "killed on request",
                "seconds": 0.0,
                "core_seconds": 0.0,
                "queued_seconds": queued_seconds,
                "slot": None,
                "limits": limits,
            },
        )
        return 0
    slot, lock = taken
    (jdir / "slot").write_text(f"{slot}\n")
    if (jdir / "queued").exists():
        (jdir / "queued").unlink()
        log("took hub slot %s after %.1f s in the queue", slot, queued_seconds)
    try:
        _slot_event(args, "start", slot)
        argv = [sys.executable, "-B", "-P", "-m", "eastwest.west.runner", "--root", str(args.root)]
        argv += [protocol.RUN, args.run, args.job, "--bundle", args.bundle]
        if limits:
            log("hub limits for this job: %s", ", ".join(f"{k}={v}" for k, v in sorted(limits.items())))
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.monotonic()
        # close_fds (the default) keeps the slot's lock out of the job: only this process holds it
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=lambda: _apply_limits(limits))
        if stop_signal:  # the kill reached the group before the job was in it
            proc.send_signal(stop_signal)
        while True:
            try:
                _, wait_status, usage = os.wait4(proc.pid, 0)
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
                continue
        code = proc.returncode = os.waitstatus_to_exitcode(wait_status)
        seconds = round(time.monotonic() - started, 3)
        with open(jdir / "log", "rb") as source:
            source.seek(max(0, (jdir / "log").stat().st_size - 4000))
            tail = source.read().decode("utf-8", "replace")
        message = describe_exit(code, limits, tail, stop_signal != 0)
        if code != 0:
            log("%s", message)
        _write_json(
            jdir / "exit.json",
            {
                "exit_code": code,
                "message": message,
                "seconds": seconds,
                "core_seconds": round(usage.ru_utime + usage.ru_stime, 3),
                "queued_seconds": queued_seconds,
                "slot": slot,
                "limits": limits,
            },
        )
    finally:
        _slot_event(args, "end", slot)
        os.close(lock)
    return 0


def _take_slot(root: Path, slots: int) -> tuple[int, int] | None:
    """A free slot's number and the descriptor holding its lock, or None when all ``slots`` are taken."""
    for n in range(slots):
        fd = os.open(slots_dir(root) / f"{n}.lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return n, fd
    return None


def _wait_for_slot(root: Path, jdir: Path, slots: int, stopped: Callable[[], bool]) -> tuple[int, int] | None:
    """Take a slot, waiting (queued) while all are busy; None if ``stopped`` first."""
    slots_dir(root).mkdir(exist_ok=True)
    taken = _take_slot(root, slots)
    if taken is None:
        (jdir / "queued").touch()
        log("waiting for a hub slot (%s of %s busy)", slots, slots)
    while taken is None and not stopped():
        time.sleep(SLOT_POLL)
        taken = _take_slot(root, slots)
    return taken


def _slot_event(args: argparse.Namespace, event: str, slot: int) -> None:
    """Append one line to ``ROOT/log/slots.log``: one write on an O_APPEND descriptor never interleaves."""
    line = {"event": event, "run": args.run, "job": args.job, "slot": slot, "at": time.time(), "pid": os.getpid()}
    path = args.root / "log" / SLOTS_LOG
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)
    except OSError as exc:  # the accounting must not fail the job
        log("cannot append to %s (%s); the job goes on", path, exc.strerror or exc)


# -- command line -----------------------------------------------------------------------------------


def _offset(value: str) -> int:
    if not value.isdigit() or len(value) > 15:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a byte offset")
    return int(value)


def _wait(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a wait of 0 to {MAX_WAIT:g} seconds")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(  # one error line, like every runner command
        prog="eastwest.west.jobctl", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", type=_root, required=True, help="the hub's data root")
    sub = parser.add_subparsers(dest="command", required=True)
    for command, func in (
        (SUBMIT, cmd_submit),
        (STATUS, cmd_status),
        (LOG, cmd_log),
        (KILL, cmd_kill),
        (SUPERVISE, cmd_supervise),
    ):
        p = sub.add_parser(command)
        p.add_argument("run", type=_name)
        p.add_argument("job", type=_name)
        if command in (SUBMIT, SUPERVISE):
            p.add_argument("--bundle", type=_digest, required=True)
        if command == STATUS:
            p.add_argument("--wait", type=_wait, default=0.0)
        if command == LOG:
            p.add_argument("--offset", type=_offset, default=0)
            p.add_argument("--limit", type=_offset, default=LOG_CHUNK)
        p.set_defaults(func=func)
    sub.add_parser(PROBE).set_defaults(func=cmd_probe)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help: printed, nothing to do (errors raise RunnerError)
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        args.root = args.root.resolve()
        if getattr(args, "limit", 0) > LOG_CHUNK:
            args.limit = LOG_CHUNK
        return int(args.func(args))
    except RunnerError as exc:
        log("error: %s", protocol.one_line(str(exc)))
        return exc.code
    except Exception as exc:  # last resort: a bug or the environment (disk full), still one line
        if protocol.disk_full(exc):
            log("error: the hub's disk is full (%s); free space on the hub, then retry", getattr(exc, "strerror", exc))
            return protocol.EXIT_INTERNAL
        log("error: internal error, %s: %s", type(exc).__name__, protocol.one_line(str(exc)))
        return protocol.EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
