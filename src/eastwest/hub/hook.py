"""Hooks for western hubs: the one place that talks SSH to a hub.

:class:`WestHubHook` extends the provider's :class:`SSHHook` (connections, pinned host keys,
connect retries) with the hub protocol: run the western runner, store job parameters, submit,
watch and kill detached jobs, read job metrics and usage, probe a hub's state, clean up a run. A
hub installs the east's key with a forced command (:mod:`eastwest.west.serve`), so a request is
only the runner's command and its validated, ``shlex``-quoted arguments; the hub picks the program
and the data root, and values travel on stdin, never inside a command line. Moving datasets is the transfer engine's job
(``eastwest.hub.transfer``), built on this hook.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException
from airflow.providers.ssh.hooks.ssh import SSHHook

from eastwest.hub.errors import HostKeyMismatch, HubDiskFull, HubError
from eastwest.west import jobctl, protocol
from eastwest.west.protocol import check_name

#: A remote command may be silent this long (seconds) before the link is declared dead.
IDLE_TIMEOUT = 120.0
#: What :meth:`WestHubHook.job_usage` reports of a finished job (fields of its ``exit.json``).
USAGE_FIELDS = ("core_seconds", "queued_seconds", "seconds")
#: How the runner's error line (its last line on stderr) reads when the hub's disk, or its user's
#: quota, is full: ENOSPC or EDQUOT as Python words them.
DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded|\[Errno (?:28|122)\]")


__all__ = ["HostKeyMismatch", "HubDiskFull", "HubError", "WestHubHook"]


class WestHubHook(SSHHook):
    """Talk to a western hub registered as an Airflow SSH connection with a pinned host key.

    The connection logs in as the hub's unprivileged user, whose key runs only the runner (see
    ``install.sh``); the hub's data root and Python are the hub's business, not the connection's.

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
    def extras(self) -> dict[str, Any]:
        """The connection's extras (link settings)."""
        return self.get_connection(self.hub).extra_dejson

    @staticmethod
    def runner_command(*args: str) -> str:
        """The request for one runner command: its words, each quoted (the hub's forced command parses it)."""
        return shlex.join(args)

    # -- connections -----------------------------------------------------------------------------

    def call(self, args: list[str], *, stdin: bytes = b"", what: str = "") -> bytes:
        """Run one runner command over the hub's shared OpenSSH connection (one handshake for the
        many short commands of a run; see :func:`eastwest.hub.openssh.command`), with the host key
        pinned as for transfers; return its stdout, or raise :class:`HubError` with its stderr."""
        from eastwest.hub import openssh

        return openssh.command(self, args, stdin=stdin, what=what or args[0])

    def check_exit(self, code: int, stderr: str, what: str) -> None:
        """Log the runner's stderr; raise :class:`HubError` with its end if it exited non-zero."""
        for line in stderr.splitlines():
            self.log.info("[%s] %s", self.hub, line)
        last = stderr.strip().rsplit("\n", 1)[-1]  # the runner's one error line is its last
        if code != 0 and DISK_FULL.search(last):
            raise HubDiskFull(
                f"hub {self.hub!r}: the hub's disk is full ({what} stopped: no space left on device); "
                "free space on the hub (its operator can remove old runs with cleanup or grow the disk), then retry"
            )
        if code != 0:
            raise HubError(f"hub {self.hub!r}: {what} failed (runner exit {code}): {stderr.strip()[-2000:]}")

    # -- the hub protocol ------------------------------------------------------------------------

    def install_bundle(self, run_key: str, digest: str) -> None:
        """Have the hub unpack the job bundle shipped as the run's bundle dataset (idempotent)."""
        args = [protocol.INSTALL_BUNDLE, check_name("run key", run_key), protocol.BUNDLE_DATASET, "--digest", digest]
        self.call(args, what=f"installing job bundle {digest[:12]}")

    def put_params(self, run_key: str, job: str, params: dict[str, Any], bundle: str) -> None:
        """Store a job's parameters on the hub as JSON (sent on stdin, never in the command line)."""
        args = [protocol.PARAMS, check_name("run key", run_key), check_name("job", job), "--bundle", bundle]
        self.call(args, stdin=json.dumps(params).encode(), what=f"storing parameters for job {job!r}")

    def job_metrics(self, run_key: str, job: str) -> dict[str, Any]:
        """The runner's metrics of a finished job (``JOB.metrics.json``; see :meth:`job_usage` for its CPU)."""
        args = [protocol.METRICS, check_name("run key", run_key), check_name("job", job)]
        return json.loads(self.call(args, what="reading job metrics") or b"{}")

    def cleanup(self, run_key: str) -> None:
        """Remove the run's scratch directory on the hub and chunks nobody used for a day."""
        keep = str(float(self.extras.get("eastwest_chunk_retention_hours", 24)))
        self.call([protocol.CLEANUP, check_name("run key", run_key), "--keep-hours", keep], what="cleaning up")

    # -- detached jobs (eastwest.west.jobctl) ------------------------------------------------------

    def submit_job(self, run_key: str, job: str, bundle: str) -> dict[str, Any]:
        """Start job ``job`` of ``bundle`` for the run, detached on the hub; a running one is kept."""
        args = [jobctl.SUBMIT, check_name("run key", run_key), check_name("job", job), "--bundle", bundle]
        return json.loads(self.call(args, what=f"submitting job {job!r}"))

    def job_status(self, run_key: str, job: str, wait: float = 0.0) -> dict[str, Any]:
        """The job's state (``running``, ``succeeded``, ``failed``, ``missing``), exit code and message.

        With ``wait`` the hub answers as soon as the job ends (or its log grows), at the latest after
        ``wait`` seconds: a watch notices the end at once instead of at its next poll.
        """
        args = [jobctl.STATUS, check_name("run key", run_key), check_name("job", job)]
        if wait > 0:
            args += ["--wait", f"{min(wait, jobctl.MAX_WAIT):g}"]
        return json.loads(self.call(args, what="reading the job's status"))

    def job_log(self, run_key: str, job: str, offset: int = 0) -> bytes:
        """The job's output from byte ``offset`` (at most ``jobctl.LOG_CHUNK`` bytes)."""
        args = [jobctl.LOG, check_name("run key", run_key), check_name("job", job), "--offset", str(int(offset))]
        return self.call(args, what="reading the job's log")

    def job_log_tail(self, run_key: str, job: str, max_bytes: int = 4000) -> str:
        """The end of the job's output, for error messages."""
        size = int(self.job_status(run_key, job).get("log_size") or 0)
        return self.job_log(run_key, job, max(0, size - max_bytes)).decode("utf-8", "replace")

    def job_usage(self, run_key: str, job: str) -> dict[str, Any]:
        """What a finished job cost the hub, as its supervisor measured it (``exit.json``, via its status).

        ``core_seconds`` is the CPU time (user + system) of the job's processes, ``queued_seconds``
        its wait for a hub slot, ``seconds`` its running time in the slot. Each is None while the
        job runs, and for a job that ended before its hub measured it (a runner older than slots).
        """
        status = self.job_status(run_key, job)
        return {key: status.get(key) for key in USAGE_FIELDS}

    def probe(self, timeout: float = 3.0) -> dict[str, Any]:
        """The hub's state for placement: slots, jobs running and queued, load, free disk and memory,
        limits and installed bundles (``jobctl probe``).

        The handshake (one attempt, no retries) and the answer must each come within ``timeout``
        seconds, so a hub that is down or overloaded costs its caller about ``timeout`` at worst.
        """
        saved = (self.conn_timeout, self.conn_retry_attempts, self.idle_timeout)
        self.conn_timeout = timeout  # type: ignore[assignment]
        self.conn_retry_attempts, self.idle_timeout = 1, timeout
        try:
            answer = self.call([jobctl.PROBE], what="probe")
        finally:
            self.conn_timeout, self.conn_retry_attempts, self.idle_timeout = saved
        try:
            status = json.loads(answer)
        except ValueError:
            status = None
        if not isinstance(status, dict):
            raise HubError(
                f"hub {self.hub!r}: its probe answered {answer[:80]!r}, not a JSON object; deploy the current "
                "runner on the hub"
            )
        return status

    def kill_job(self, run_key: str, job: str) -> None:
        """Kill the job's whole process group on the hub (SIGTERM, then SIGKILL)."""
        args = [jobctl.KILL, check_name("run key", run_key), check_name("job", job)]
        self.call(args, what=f"killing job {job!r}")
