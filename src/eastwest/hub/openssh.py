"""OpenSSH's client as the data path to a hub: C crypto, and one handshake per transfer.

paramiko encrypts in Python, which caps a stream at tens of MB/s on this class of machine, and
every paramiko connection pays a full handshake. A transfer therefore opens one OpenSSH master
connection to the hub and runs each of its runner commands (``have``, the parallel ``put`` and
``get`` streams, ``commit``, ``manifest``) as a session multiplexed over it (``ControlMaster``).

The pin is kept, and nothing of the user's SSH set-up takes part: ``ssh`` gets no config file
(``-F /dev/null``), a known-hosts file written for this link holding only the connection's pinned
host key (``StrictHostKeyChecking=yes``, host key algorithms limited to the pinned key's type), the
connection's own key and no agent. A hub that offers another key is refused before anything is
sent. Requests stay the runner's command with its ``shlex``-quoted words; values travel on stdin.

The hub's short commands (probe, parameters, submit, status, metrics, clean-up) go through
:func:`command`: one master per hub and connection settings, shared by the tasks of this user on
this machine and kept for ``MASTER_LINGER`` seconds after its last session, so a run's dozen
commands pay one handshake instead of a dozen. Its socket lives in a directory only this user can
enter, named after everything the connection pins (address, login, key, host key): a changed
connection never reuses an old master.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from eastwest.hub.errors import HostKeyMismatch, HubError
from eastwest.hub.hook import WestHubHook

log = logging.getLogger(__name__)

#: How long an idle master outlives its last session if its owner died without closing it (s).
MASTER_LINGER = 60
#: Host key algorithms OpenSSH may use for a pinned key of each type.
_ALGORITHMS = {"ssh-rsa": "rsa-sha2-512,rsa-sha2-256,ssh-rsa"}


def ssh_binary() -> str:
    found = shutil.which("ssh")
    if found is None:
        raise HubError("OpenSSH's client (ssh) is not installed on this machine; install openssh-client")
    return found


class OpenSshLink:
    """One master connection to a hub; runner commands run as sessions over it.

    Use as a context manager: entering connects (and checks the host key), leaving closes the
    master and removes the link's private directory (known-hosts file, key copy, socket).
    """

    def __init__(self, hook: WestHubHook) -> None:
        self.hook = hook
        self.hub = hook.hub
        self._dir: Path | None = None

    # -- set-up ------------------------------------------------------------------------------------

    def __enter__(self) -> OpenSshLink:
        _sweep_orphans()
        self._dir = Path(tempfile.mkdtemp(prefix=f"eastwest-ssh-{self.hub}-{os.getpid()}-"))  # 0700
        try:
            self._write_files()
            self._start_master()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_files(self) -> None:
        assert self._dir is not None
        key = self.hook.host_key
        assert key is not None  # WestHubHook refuses connections without a pin
        (self._dir / "known_hosts").write_text(f"{self.alias} {key.get_name()} {key.get_base64()}\n")
        if (
            self.hook.extras.get("private_key")
            and not self.hook.key_file
            and self.hook.extras.get("private_key_passphrase")
        ):
            raise HubError(
                f"hub {self.hub!r}: its connection's private_key has a passphrase, which OpenSSH cannot be given "
                "here; use an unencrypted key_file readable only by this user"
            )

    def _write_identity(self) -> Path | None:
        """The connection's private_key as a file for the master's login (None with a key_file);
        removed as soon as the master has logged in: sessions over it need no key."""
        private = self.hook.extras.get("private_key")
        if not private or self.hook.key_file:
            return None
        assert self._dir is not None
        identity = self._dir / "identity"
        identity.unlink(missing_ok=True)
        fd = os.open(identity, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private.strip() + "\n")
        return identity

    @property
    def alias(self) -> str:
        return f"eastwest-{self.hub}"

    def _identity(self) -> str:
        assert self._dir is not None
        if self.hook.key_file:
            return str(Path(self.hook.key_file).expanduser())
        if self.hook.extras.get("private_key"):
            return str(self._dir / "identity")
        raise HubError(f"hub {self.hub!r}: its connection names no key (key_file or private_key extra)")

    def _options(self) -> list[str]:
        assert self._dir is not None
        key = self.hook.host_key
        assert key is not None
        idle = max(3.0, float(self.hook.idle_timeout))
        interval = max(1, min(15, int(idle // 3)))
        options = {
            "BatchMode": "yes",
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": str(self._dir / "known_hosts"),
            "GlobalKnownHostsFile": "/dev/null",
            "HostKeyAlias": self.alias,
            "HostKeyAlgorithms": _ALGORITHMS.get(key.get_name(), key.get_name()),
            "CheckHostIP": "no",
            "UpdateHostKeys": "no",
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "IdentityFile": self._identity(),
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "ForwardAgent": "no",
            "ForwardX11": "no",
            "ClearAllForwardings": "yes",
            "Compression": "no",  # the chunks are zstd already
            "ConnectTimeout": str(int(self.hook.conn_timeout or 10)),
            "ServerAliveInterval": str(interval),
            "ServerAliveCountMax": str(max(1, math.ceil(idle / interval))),
            "ControlPath": str(self._dir / "master"),
            "LogLevel": "ERROR",
        }
        return [part for name, value in options.items() for part in ("-o", f"{name}={value}")]

    def _target(self) -> list[str]:
        return ["-p", str(self.hook.port or 22), "-l", str(self.hook.username), "--", str(self.hook.remote_host)]

    def _start_master(self) -> None:
        where = f"{self.hook.remote_host}:{self.hook.port or 22}"
        argv = [
            ssh_binary(), "-F", "/dev/null", *self._options(), "-o", "ControlMaster=yes",
            "-o", f"ControlPersist={MASTER_LINGER}", "-N", "-f", "-T", *self._target(),
        ]  # fmt: skip
        attempts = max(1, int(self.hook.conn_retry_attempts or 1))
        for attempt in range(1, attempts + 1):
            identity = self._write_identity()
            try:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=False)
            finally:
                if identity is not None:
                    identity.unlink(missing_ok=True)
            if done.returncode == 0:
                return
            err = done.stderr.decode("utf-8", "replace").strip()
            if "Host key verification failed" in err or "HOST IDENTIFICATION HAS CHANGED" in err:
                raise HostKeyMismatch(
                    f"hub {self.hub!r}: host key does not match the pinned key in connection {self.hub!r} "
                    f"({err.splitlines()[-1] if err else 'refused by ssh'}); if the hub was rebuilt, update the "
                    "connection's host_key after checking the new key out of band"
                )
            if "Permission denied" in err:
                raise HubError(
                    f"hub {self.hub!r}: {where} refused our key; add the east client's public key to the hub's "
                    "authorized_keys"
                )
            if attempt == attempts:
                raise HubError(
                    f"hub {self.hub!r} is unreachable at {where} ({err[-300:] or 'ssh exit ' + str(done.returncode)}); "
                    "is its sshd running? (local hubs: `make hubs`)"
                )
            time.sleep(min(2.0, 0.5 * attempt))

    def alive(self) -> bool:
        """Whether the master connection still runs (``ssh -O check``)."""
        return self._control("check")

    def _control(self, operation: str) -> bool:
        """Ask the master to ``check`` or ``exit`` (``ssh -O``); whether it answered. False without one."""
        if self._dir is None or not (self._dir / "master").exists():
            return False
        done = subprocess.run(
            [ssh_binary(), "-F", "/dev/null", "-o", f"ControlPath={self._dir / 'master'}", "-O", operation,
             *self._target()],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        return done.returncode == 0

    def ensure(self) -> None:
        """Reconnect if the master connection was lost (a dropped link, a restarted hub)."""
        if not self.alive():
            log.info("hub %s: the SSH connection was lost; connecting again", self.hub)
            if self._dir is not None:
                (self._dir / "master").unlink(missing_ok=True)
            self._start_master()

    def close(self) -> None:
        """Close the master (its sessions end with it) and remove the link's files."""
        if self._dir is None:
            return
        self._control("exit")
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    # -- sessions ----------------------------------------------------------------------------------

    def popen(self, *args: str) -> subprocess.Popen:
        """Start runner command ``args`` as a session over the master; pipes on stdin, stdout, stderr."""
        if self._dir is None:
            raise HubError(f"hub {self.hub!r}: the link is closed")
        argv = [
            ssh_binary(), "-F", "/dev/null", *self._options(), "-o", "ControlMaster=no", "-T", *self._target(),
            self.hook.runner_command(*args),
        ]  # fmt: skip
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, args: list[str], *, stdin: bytes = b"", what: str = "") -> bytes:
        """Run one runner command; return its stdout, or raise :class:`HubError` with its stderr."""
        what = what or args[0]
        session = Session(self, self.popen(*args), what)
        try:
            session.write(stdin)
            session.close_input()
        except OSError:
            pass  # the runner stopped reading: its exit status and stderr say why
        code = session.wait()
        self.hook.check_exit(code, session.error_text(), what)
        return bytes(session.out)


def _sweep_orphans() -> None:
    """Remove link directories whose process died without closing them (a task killed with
    SIGKILL): their masters have already exited or exit within ``MASTER_LINGER`` idle seconds."""
    for path in Path(tempfile.gettempdir()).glob("eastwest-ssh-*-*-*"):
        try:
            pid = int(path.name.rsplit("-", 2)[-2])
            if path.lstat().st_uid != os.getuid() or not stat.S_ISDIR(path.lstat().st_mode):
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, OSError):
            continue  # not one of ours, or its process lives (perhaps as another user's)


def _private_dir(path: Path) -> Path:
    """``path`` as a directory only this user may enter (created if missing; refused if not)."""
    path.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise HubError(
            f"{path} must be a directory owned by this user and closed to others (mode 0700); remove it and retry"
        )
    return path


class SharedLink(OpenSshLink):
    """The hub's master connection shared by this user's tasks: found if it runs, started if not,
    and left running for ``MASTER_LINGER`` idle seconds when the block ends."""

    def _pins(self) -> str:
        hook, key = self.hook, self.hook.host_key
        assert key is not None
        private = hook.extras.get("private_key") or ""
        pinned = [hook.remote_host, hook.port or 22, hook.username, key.get_name(), key.get_base64(),
                  str(hook.key_file or ""), hashlib.sha256(private.encode()).hexdigest()]  # fmt: skip
        return hashlib.sha256(json.dumps(pinned).encode()).hexdigest()[:16]

    def __enter__(self) -> SharedLink:
        base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
        self._dir = _private_dir(_private_dir(base / f"eastwest-ssh-{os.getuid()}") / self._pins())
        with open(self._dir / "lock", "a") as lock:  # one task starts the master; the others wait and use it
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.alive():
                (self._dir / "master").unlink(missing_ok=True)
                self._write_files()
                self._start_master()
        return self

    def __exit__(self, *exc: object) -> None:
        self._dir = None  # the master lingers for the next command

    def discard(self) -> None:
        """Stop a master that failed a command (the next command starts a fresh one)."""
        if self._dir is not None:
            self._control("exit")
            (self._dir / "master").unlink(missing_ok=True)


def command(hook: WestHubHook, args: list[str], *, stdin: bytes = b"", what: str = "") -> bytes:
    """Run one runner command over the hub's shared master; its stdout, or :class:`HubError`.

    A master that lost its link is replaced once and the command sent again: every runner command
    is idempotent (a submit keeps a running job, a put of parameters replaces them).
    """
    for attempt in (1, 2):
        with SharedLink(hook) as link:
            try:
                return link.run(args, stdin=stdin, what=what)
            except HubError:
                if attempt == 2 or link.alive():
                    raise  # the runner's own failure, or the link failed twice
                link.discard()
    raise AssertionError("unreachable")


class Session:
    """One runner command over a link: stdout and stderr are drained by threads, and a session
    with no progress either way for the link's idle timeout is killed (a dead link fails the
    transfer instead of hanging it)."""

    def __init__(self, link: OpenSshLink, proc: subprocess.Popen, what: str, *, collect_stdout: bool = True) -> None:
        self.link = link
        self.proc = proc
        self.what = what
        self.out = bytearray()
        self.err = bytearray()
        self.idle_timeout = float(link.hook.idle_timeout)
        self.last_progress = time.monotonic()
        self.stalled = False
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._drain, args=(proc.stderr, self.err), daemon=True)]
        if collect_stdout:
            self._threads.append(threading.Thread(target=self._drain, args=(proc.stdout, self.out), daemon=True))
        self._threads.append(threading.Thread(target=self._watch, daemon=True))
        for thread in self._threads:
            thread.start()

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def progressed(self) -> None:
        self.last_progress = time.monotonic()

    def _drain(self, source: IO[bytes] | None, into: bytearray) -> None:
        assert source is not None
        while piece := source.read1(1 << 16):  # type: ignore[attr-defined]
            into.extend(piece)
            self.progressed()

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            if self.proc.poll() is not None:
                return
            if time.monotonic() - self.last_progress > self.idle_timeout:
                self.stalled = True
                self.proc.kill()
                return

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def write(self, data: bytes) -> None:
        if data:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            self.progressed()

    def close_input(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def wait(self) -> int:
        """Wait for the command to end; its exit code. A stalled or lost link raises :class:`HubError`."""
        try:
            code = self.proc.wait()
        finally:
            self._done.set()
            for thread in self._threads:
                thread.join(timeout=5)
            self.close_input()
        if self.stalled:
            raise HubError(
                f"hub {self.link.hub!r}: no progress for {self.idle_timeout:.0f}s during {self.what}; "
                "the link dropped or the hub is overloaded"
            )
        if code == 255:  # ssh's own failure: the link, not the runner
            raise HubError(f"hub {self.link.hub!r}: the link failed during {self.what}: {self.error_text()[-500:]}")
        return code

    def error_text(self) -> str:
        return self.err.decode("utf-8", "replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


def session_of(link: OpenSshLink, *args: str, what: str, collect_stdout: bool = True) -> Session:
    """Start runner command ``args`` over ``link`` as a watched :class:`Session`."""
    return Session(link, link.popen(*args), what, collect_stdout=collect_stdout)


__all__ = ["OpenSshLink", "Session", "SharedLink", "command", "session_of", "ssh_binary"]
