"""Hooks for western hubs: the one place that talks SSH to a hub.

:class:`WestHubHook` extends the provider's :class:`SSHHook` (connections, pinned host keys,
connect retries) with the hub protocol: ship and fetch verified Arrow datasets, store job
parameters, read job metrics, clean up a run. Every remote command is the western runner with
validated, ``shlex``-quoted arguments; values travel on stdin, never inside a shell string.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowNotFoundException
from airflow.providers.ssh.hooks.ssh import SSH_PORT, SSHHook

from eastwest.settings import check_name
from westnode import wire

#: A remote command may be silent this long (seconds) before the link is declared dead.
IDLE_TIMEOUT = 120.0
PROGRESS_EVERY = 5.0
SEND_CHUNK = 1 << 20


class HubError(AirflowException):
    """A hub is unreachable, misconfigured, or refused an operation."""


class WestHubHook(SSHHook):
    """Talk to a western hub registered as an Airflow SSH connection with a pinned host key.

    The connection's extras name the hub's layout: ``eastwest_root`` (data root holding the
    deployed runner in ``opt/`` and run data in ``scratch/``) and ``eastwest_python`` (the hub's
    Python with the pinned western requirements).

    :param hub: the hub name, which is also its SSH connection id.
    :param idle_timeout: seconds a transfer or command may make no progress before it fails.
    """

    conn_name_attr = "ssh_conn_id"
    default_conn_name = "west_guizhou"
    conn_type = "ssh"
    hook_name = "Western hub (SSH)"

    def __init__(self, hub: str, *, idle_timeout: float = IDLE_TIMEOUT, **kwargs: Any) -> None:
        check_name("hub", hub)
        try:
            super().__init__(ssh_conn_id=hub, cmd_timeout=None, **kwargs)
        except AirflowNotFoundException as exc:
            raise HubError(
                f"hub {hub!r}: no Airflow connection {hub!r} is defined; register the hub as an SSH "
                "connection (for local hubs run `make hubs` and load .local/hubs/connections.env)"
            ) from exc
        self.hub = hub
        self.idle_timeout = idle_timeout
        if self.no_host_key_check or self.host_key is None:
            raise HubError(
                f"hub {hub!r}: connection {hub!r} does not pin a host key; set its 'host_key' extra to "
                "the hub's public host key (ssh-keyscan output) and remove 'no_host_key_check'"
            )

    @cached_property
    def _extras(self) -> dict[str, Any]:
        return self.get_connection(self.ssh_conn_id).extra_dejson

    @property
    def root(self) -> str:
        root = self._extras.get("eastwest_root")
        if not root or not str(root).startswith("/") or ".." in str(root):
            raise HubError(f"hub {self.hub!r}: connection extra 'eastwest_root' must be an absolute path")
        return str(root)

    @property
    def jobs_dir(self) -> str:
        return f"{self.root}/jobs"

    @property
    def python(self) -> str:
        return str(self._extras.get("eastwest_python") or "python3")

    def runner_command(self, *args: str) -> str:
        """The shell command that runs the western runner with ``args``, every word quoted."""
        words = ["env", f"PYTHONPATH={self.root}/opt", self.python, "-m", "westnode.runner", "--root", self.root]
        return shlex.join([*words, *args])

    # -- connections -----------------------------------------------------------------------------

    def get_conn(self) -> Any:
        """Connect like :class:`SSHHook`, then insist the server's key is the pinned one.

        paramiko prefers keys from ``~/.ssh/known_hosts`` over the connection's ``host_key``, so an
        entry there could override the pin; checking the negotiated key closes that gap.
        """
        import paramiko

        client = super().get_conn()
        offered = client.get_transport().get_remote_server_key()
        if offered != self.host_key:
            client.close()
            self.client = None
            raise paramiko.BadHostKeyException(self.remote_host, offered, self.host_key)
        return client

    @contextmanager
    def get_managed_conn(self) -> Iterator[Any]:
        """Open a connection to the hub, translate failures into actionable errors, always close."""
        import paramiko

        where = f"{self.remote_host}:{self.port or SSH_PORT}"
        try:
            client = self.get_conn()
        except paramiko.BadHostKeyException as exc:
            raise HubError(
                f"hub {self.hub!r}: host key does not match the pinned key in connection {self.hub!r} "
                f"(server offered {exc.key.get_name()} {exc.key.get_base64()[:24]}…); if the hub was "
                "rebuilt, update the connection's host_key after checking the new key out of band"
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise HubError(
                f"hub {self.hub!r}: {where} refused our key; add the east client's public key to the "
                "hub's authorized_keys"
            ) from exc
        except (TimeoutError, paramiko.ssh_exception.NoValidConnectionsError, OSError) as exc:
            raise HubError(
                f"hub {self.hub!r} is unreachable at {where} ({exc}); is its sshd running? (local hubs: `make hubs`)"
            ) from exc
        except paramiko.SSHException as exc:
            raise HubError(f"hub {self.hub!r}: SSH handshake with {where} failed: {exc}") from exc
        try:
            yield client
        finally:
            client.close()
            self.client = None

    def _run(
        self,
        client: Any,
        args: list[str],
        *,
        stdin: IO[bytes] | bytes | None = None,
        stdin_size: int = 0,
        label: str = "",
    ) -> tuple[int, bytes, str]:
        """Run the runner with ``args``; stream ``stdin`` to it; return (exit code, stdout, stderr).

        Fails with :class:`HubError` when the channel cannot be opened, the link drops, or nothing
        arrives for ``idle_timeout`` seconds; the runner's stderr is kept for the message.
        """
        import paramiko

        what = label or args[0]
        try:
            channel = client.get_transport().open_session()
        except (paramiko.SSHException, OSError) as exc:
            raise HubError(f"hub {self.hub!r}: cannot open a channel for {what}: {exc}") from exc
        channel.settimeout(self.idle_timeout)
        stdout, stderr = bytearray(), bytearray()

        def drain() -> bool:
            got = False
            while channel.recv_ready():
                stdout.extend(channel.recv(1 << 16))
                got = True
            while channel.recv_stderr_ready():
                stderr.extend(channel.recv_stderr(1 << 16))
                got = True
            return got

        send_error: Exception | None = None
        try:
            channel.exec_command(self.runner_command(*args))
            try:
                if isinstance(stdin, bytes):
                    channel.sendall(stdin)
                elif stdin is not None:
                    sent, started, last = 0, time.monotonic(), time.monotonic()
                    while chunk := stdin.read(SEND_CHUNK):
                        channel.sendall(chunk)
                        sent += len(chunk)
                        drain()
                        now = time.monotonic()
                        if now - last >= PROGRESS_EVERY:
                            last = now
                            self._progress(what, sent, stdin_size, now - started)
                channel.shutdown_write()
            except OSError as exc:  # the runner stopped reading: its exit status and stderr say why
                send_error = exc
            last_progress = time.monotonic()
            while not channel.exit_status_ready() or channel.recv_ready() or channel.recv_stderr_ready():
                if drain():
                    last_progress = time.monotonic()
                elif channel.closed and not channel.exit_status_ready():
                    raise HubError(f"hub {self.hub!r}: the connection closed during {what}")
                elif time.monotonic() - last_progress > self.idle_timeout:
                    raise TimeoutError
                else:
                    time.sleep(0.005)
            code = channel.recv_exit_status()
        except TimeoutError as exc:
            raise HubError(
                f"hub {self.hub!r}: no progress for {self.idle_timeout:.0f}s during {what}; "
                "the link dropped or the hub is overloaded"
            ) from exc
        except (paramiko.SSHException, OSError) as exc:
            raise HubError(f"hub {self.hub!r}: the link failed during {what}: {exc}") from exc
        finally:
            channel.close()
        if send_error is not None and code == 0:
            raise HubError(f"hub {self.hub!r}: sending to {what} failed: {send_error}")
        return code, bytes(stdout), stderr.decode("utf-8", "replace")

    def _progress(self, label: str, done: int, total: int, seconds: float) -> None:
        rate = done / seconds / 1e6 if seconds else 0.0
        if total:
            eta = (total - done) / (done / seconds) if done else 0.0
            self.log.info(
                "%s: %.0f%% (%.1f of %.1f MB) at %.1f MB/s, ETA %.0fs",
                label,
                100.0 * done / total,
                done / 1e6,
                total / 1e6,
                rate,
                eta,
            )
        else:
            self.log.info("%s: %.1f MB at %.1f MB/s", label, done / 1e6, rate)

    def _check(self, code: int, stderr: str, what: str) -> None:
        for line in stderr.splitlines():
            self.log.info("[%s] %s", self.hub, line)
        if code != 0:
            raise HubError(f"hub {self.hub!r}: {what} failed (runner exit {code}): {stderr.strip()[-2000:]}")

    # -- the hub protocol ------------------------------------------------------------------------

    def ship(self, run_key: str, name: str, path: Path, manifest: wire.Manifest) -> dict[str, Any]:
        """Send a local dataset file to the hub; it is renamed into place only once verified there."""
        check_name("run key", run_key)
        check_name("dataset", name)
        args = ["receive", run_key, name, manifest.sha256, str(manifest.bytes), str(manifest.rows)]
        started = time.monotonic()
        with self.get_managed_conn() as client, open(path, "rb") as f:
            sender = wire.HashingWriter(_NullSink())
            tee = _TeeReader(f, sender)
            code, out, err = self._run(client, args, stdin=tee, stdin_size=manifest.bytes, label=f"ship {name}")
        seconds = time.monotonic() - started
        self._check(code, err, f"receiving {name}")
        if sender.sha256 != manifest.sha256:
            raise HubError(f"local file {path} changed while shipping (sha256 {sender.sha256} != {manifest.sha256})")
        remote = wire.Manifest.from_dict(json.loads(out))
        remote.check_against(manifest, what=f"hub {self.hub!r} verified a different {name}")
        self.log.info(
            "shipped %s rows (%.2f MB on the wire, %.2f MB raw) to %s in %.2fs (%.1f MB/s), sha256 verified both sides",
            manifest.rows,
            manifest.bytes / 1e6,
            manifest.raw_bytes / 1e6,
            self.hub,
            seconds,
            manifest.bytes / 1e6 / max(seconds, 1e-9),
        )
        return {
            "seconds": round(seconds, 3),
            "wire_bytes": manifest.bytes,
            "mb_per_s": round(manifest.bytes / 1e6 / max(seconds, 1e-9), 1),
        }

    def fetch(self, run_key: str, name: str, dest: Path) -> wire.Manifest:
        """Bring a dataset back from the hub into ``dest``, verified against the hub's manifest."""
        check_name("run key", run_key)
        check_name("dataset", name)
        with self.get_managed_conn() as client:
            code, out, err = self._run(client, ["stat", run_key, name], label=f"stat {name}")
            self._check(code, err, f"reading the manifest of {name}")
            expected = wire.Manifest.from_dict(json.loads(out))
            channel = client.get_transport().open_session()
            channel.settimeout(self.idle_timeout)
            try:
                channel.exec_command(self.runner_command("send", run_key, name))
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    got = wire.receive_to(dest, channel.makefile("rb"), expected)
                except wire.VerificationError as exc:
                    raise HubError(f"hub {self.hub!r}: {exc}; the result will be fetched again on retry") from exc
                code = channel.recv_exit_status()
                err = channel.makefile_stderr("rb").read().decode("utf-8", "replace")
            except TimeoutError as exc:
                raise HubError(f"hub {self.hub!r}: no progress for {self.idle_timeout:.0f}s fetching {name}") from exc
            finally:
                channel.close()
        self._check(code, err, f"sending {name}")
        return got

    def put_params(self, run_key: str, job: str, params: dict[str, Any]) -> None:
        """Store a job's parameters on the hub as JSON (sent on stdin, never in the command line)."""
        check_name("run key", run_key)
        check_name("job", job)
        with self.get_managed_conn() as client:
            code, _, err = self._run(
                client, ["params", run_key, job], stdin=json.dumps(params).encode(), label="params"
            )
        self._check(code, err, f"storing parameters for job {job!r}")

    def job_metrics(self, run_key: str, job: str) -> dict[str, Any]:
        with self.get_managed_conn() as client:
            code, out, err = self._run(client, ["metrics", check_name("run key", run_key), check_name("job", job)])
        self._check(code, err, "reading job metrics")
        return json.loads(out or b"{}")

    def cleanup(self, run_key: str) -> None:
        """Remove the run's scratch directory on the hub (idempotent)."""
        with self.get_managed_conn() as client:
            code, _, err = self._run(client, ["cleanup", check_name("run key", run_key)])
        self._check(code, err, "cleaning up")

    def tail_job_log(self, log_file: str, max_bytes: int = 4000) -> str:
        """Return the end of a remote job log under this hub's jobs directory."""
        if not log_file.startswith(self.jobs_dir + "/") or ".." in log_file:
            return ""
        with self.get_managed_conn() as client:
            _, out, _ = self.exec_ssh_client_command(
                client, f"tail -c {int(max_bytes)} {shlex.quote(log_file)}", get_pty=False, environment=None, timeout=30
            )
        return out.decode("utf-8", "replace")


class _NullSink:
    def write(self, data: Any) -> None:
        pass


class _TeeReader:
    """Read from ``source`` while hashing every byte read into ``hasher``."""

    def __init__(self, source: IO[bytes], hasher: wire.HashingWriter) -> None:
        self._source = source
        self._hasher = hasher

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self._hasher.write(data)
        return data
