"""The trigger that watches a detached job on a western hub (see :mod:`eastwest.west.jobctl`).

Like the SSH provider's ``SSHRemoteJobTrigger``, it keeps one SSH connection for the whole watch,
streams the job's output into the task log as it grows, and survives a dropped link: a hub that
cannot be reached is retried with backoff for ``lost_after`` seconds before the watch gives up. It
speaks only runner commands (``status``, ``log``), through :class:`WestHubHook` and its pinned host
key, in a worker thread so the triggerer's event loop never blocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from eastwest.hub.errors import HostKeyMismatch
from eastwest.hub.jobs import JobWatch, poll_wait
from eastwest.west import jobctl


class WestJobTrigger(BaseTrigger):
    """Poll a hub job until it ends, its deadline passes, or the hub stays unreachable too long.

    :param hub: the hub (its Airflow connection id).
    :param run_key: the run whose job it is.
    :param job: the job's name.
    :param log_offset: bytes of the job's output already shown.
    :param poll_interval: base seconds to wait before polling again after a failed poll (a poll
        itself waits on the hub until the job ends, at most ``jobs.LONG_POLL`` seconds).
    :param deadline: epoch seconds after which the job is timed out (None: no limit).
    :param lost_after: seconds of failed polls in a row after which the watch gives up.
    """

    def __init__(
        self,
        hub: str,
        run_key: str,
        job: str,
        log_offset: int = 0,
        poll_interval: float = 2.0,
        deadline: float | None = None,
        lost_after: float = 600.0,
    ) -> None:
        super().__init__()
        self.hub, self.run_key, self.job = hub, run_key, job
        self.log_offset = log_offset
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.lost_after = lost_after

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "hub": self.hub,
                "run_key": self.run_key,
                "job": self.job,
                "log_offset": self.log_offset,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "lost_after": self.lost_after,
            },
        )

    def _event(self, status: str, message: str, exit_code: int | None, watch: JobWatch) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "exit_code": exit_code,
                "hub": self.hub,
                "run_key": self.run_key,
                "job": self.job,
                "log_offset": watch.offset,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = JobWatch(self.hub, self.run_key, self.job, self.log_offset)
        failing_since: float | None = None
        failures = 0
        while True:
            if self.deadline is not None and time.time() > self.deadline:
                yield self._event("timeout", "the job ran past its timeout", None, watch)
                return
            try:
                status, output = await asyncio.to_thread(watch.poll, poll_wait(self.deadline))
            except HostKeyMismatch as exc:  # not a flaky link: never retried
                yield self._event("error", str(exc), None, watch)
                return
            except Exception as exc:
                failures += 1
                failing_since = failing_since or time.monotonic()
                waited = time.monotonic() - failing_since
                if waited > self.lost_after:
                    yield self._event("lost", f"hub {self.hub} unreachable for {waited:.0f}s: {exc}", None, watch)
                    return
                self.log.warning("cannot reach hub %s to watch job %s (%s); retrying", self.hub, self.job, exc)
                await asyncio.sleep(min(self.poll_interval * 2**failures, 30.0))
                continue
            failing_since, failures = None, 0
            for line in output.decode("utf-8", "replace").splitlines():
                self.log.info("[%s] %s", self.hub, line)
            self.log_offset = watch.offset
            if status["state"] != jobctl.RUNNING:
                yield self._event(status["state"], str(status.get("message", "")), status.get("exit_code"), watch)
                return
