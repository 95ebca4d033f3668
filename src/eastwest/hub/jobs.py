"""Detached jobs on a hub, watched from the east: one connection polling status and output.

:class:`JobWatch` is what the deferrable trigger (:mod:`eastwest.airflow.triggers`) and the
synchronous paths share; :func:`watch` is the synchronous loop (the compute operator without a
triggerer, and a fetch that fails over runs the job itself); :func:`run_job` submits a job and
watches it to its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from eastwest.hub.errors import HostKeyMismatch, HubError
from eastwest.west import jobctl

#: How long one status request may wait on the hub for the job to end: the end is noticed at once,
#: and a long job costs one request per LONG_POLL seconds (or per second of new output).
LONG_POLL = 10.0


def poll_wait(deadline: float | None) -> float:
    """How long the next status request may wait on the hub: ``LONG_POLL``, cut short by ``deadline``."""
    if deadline is None:
        return LONG_POLL
    return max(0.0, min(LONG_POLL, deadline - time.time()))


class JobWatch:
    """Polling one job on a hub: the part the trigger and the sync path share. Each poll is one or
    two commands over the hub's shared connection (no handshake after the first)."""

    def __init__(self, hub: str, run_key: str, job: str, offset: int = 0) -> None:
        self.hub, self.run_key, self.job, self.offset = hub, run_key, job, offset
        self._hook: Any = None

    def poll(self, wait: float = 0.0) -> tuple[dict[str, Any], bytes]:
        """The job's status and its output since the last poll; raises if the hub cannot be reached.

        ``wait``: let the hub hold the answer up to that many seconds until the job ends (or
        prints), so its end is noticed at once; the caller then needs no sleep between polls.
        """
        if self._hook is None:
            from eastwest.hub.hook import WestHubHook  # SSH loads only when a job is watched

            self._hook = WestHubHook(self.hub)
        status = self._hook.job_status(self.run_key, self.job, wait=wait)
        output = bytearray()
        size = int(status.get("log_size") or 0)
        while self.offset < size:  # to the end, so a finished job's last lines are never lost
            chunk = self._hook.job_log(self.run_key, self.job, self.offset)
            if not chunk:
                break
            output.extend(chunk)
            self.offset += len(chunk)
        return status, bytes(output)


def watch(
    job: JobWatch,
    *,
    deadline: float | None,
    poll_interval: float,
    lost_after: float,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    """Poll ``job`` until it ends; return the event the trigger would (``status``, ``message``,
    ``exit_code``): ``timeout`` past ``deadline``, ``lost`` after ``lost_after`` seconds without
    the hub, ``error`` on a host key mismatch. Each output line goes to ``emit``."""
    failing_since = None
    while True:
        if deadline is not None and time.time() > deadline:
            return {"status": "timeout", "message": "the job ran past its timeout"}
        try:
            status, output = job.poll(wait=poll_wait(deadline))
        except HostKeyMismatch as exc:
            return {"status": "error", "message": str(exc)}
        except HubError as exc:
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > lost_after:
                return {"status": "lost", "message": str(exc)}
            time.sleep(poll_interval)
            continue
        failing_since = None
        for line in output.decode("utf-8", "replace").splitlines():
            emit(f"[{job.hub}] {line}")
        if status["state"] != jobctl.RUNNING:
            return {
                "status": status["state"],
                "message": status.get("message"),
                "exit_code": status.get("exit_code"),
            }


def submit(hub: str, run_key: str, job: str, bundle: str, params: dict[str, Any]) -> dict[str, Any]:
    """Store the job's parameters on the hub and start it there (a running one is kept)."""
    from eastwest.hub.hook import WestHubHook

    hook = WestHubHook(hub)
    hook.put_params(run_key, job, params, bundle)
    return hook.submit_job(run_key, job, bundle)


def hub_failed(event: dict[str, Any]) -> bool:
    """Whether a job's end was the hub's doing (lost, killed by a signal, its supervisor gone), not
    the job's own error: such a run may move to another hub."""
    if event.get("status") in ("lost", "error"):
        return True
    code = event.get("exit_code")
    return event.get("status") == jobctl.FAILED and (code is None or int(code) < 0)
