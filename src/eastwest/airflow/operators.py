"""The operator that runs a registered Polars job on a western hub.

Hubs let the east's key run the runner and nothing else, so the compute step cannot use
``SSHRemoteJobOperator``'s shell wrapper. :class:`WestJobOperator` keeps its properties with the
runner's own job control (:mod:`eastwest.west.jobctl`): the job is submitted detached in its own
process group, a deferrable trigger watches it and streams its output into the task log, a non-zero
exit fails the task with the job's last output, and a kill, a timeout or a lost monitor kills the
process group. It is a :class:`ResumableJobMixin` operator: a retry re-attaches to a job that is
still running, or takes the result of one that finished, instead of starting a second one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, BaseOperator, ResumableJobMixin

from eastwest.airflow.triggers import JobWatch, WestJobTrigger, poll_delay
from eastwest.hub.hook import HostKeyMismatch, HubError, WestHubHook
from eastwest.settings import get_settings
from eastwest.west import jobctl, protocol
from eastwest.west.protocol import check_name


class WestJobOperator(ResumableJobMixin, BaseOperator):
    """Run a job of the shipped bundle on a western hub against a run's shipped datasets.

    :param plan: the run's plan (``eastwest.east.plan.Plan.to_dict()``), usually the output of the
        DAG's plan task (templated). It names the hub, the job, the run key and the job parameters.
    :param bundle_task: the task whose return value names the installed job bundle (``bundle``).
    :param timeout: seconds the job may run before it is killed (None: no limit).
    :param poll_interval: seconds between status polls.
    :param lost_after: seconds the hub may be unreachable before the watch gives up (the job is
        killed if the hub can be told; a retry re-attaches to it otherwise).
    :param deferrable: watch from the triggerer (default) instead of holding a worker slot.
    """

    template_fields: Sequence[str] = ("plan",)
    ui_color = "#f0e6c8"
    external_id_key = "eastwest_west_job"

    def __init__(
        self,
        *,
        plan: Any,
        bundle_task: str = "ship",
        timeout: int | None = None,
        poll_interval: float = 2.0,
        lost_after: float = 600.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.bundle_task = bundle_task
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.lost_after = lost_after
        self.deferrable = deferrable

    def _bind(self) -> tuple[str, str, str]:
        """Check the rendered plan; return (hub, job, run key)."""
        if not isinstance(self.plan, dict):
            raise AirflowException(f"{self.task_id}: plan must be a dict, got {type(self.plan).__name__}")
        hub, job, run_key = self.plan.get("hub"), self.plan.get("job"), self.plan.get("run_key")
        hubs = get_settings().hubs
        if hub not in hubs:
            raise AirflowException(f"hub {hub!r} is not configured; choose one of {', '.join(hubs)}")
        return str(hub), check_name("job", str(job)), check_name("run key", str(run_key))

    def execute(self, context: Any) -> Any:
        self._bind()
        return self.execute_resumable(context)

    # -- ResumableJobMixin ------------------------------------------------------------------------

    def _bundle(self, context: Any) -> str:
        """The digest of the job bundle the run's ship task installed."""
        shipped = context["ti"].xcom_pull(task_ids=self.bundle_task) or {}
        digest = str(shipped.get("bundle") or "")
        if not protocol.SHA256_HEX.fullmatch(digest):
            raise AirflowException(f"{self.bundle_task} did not report an installed job bundle; rerun it first")
        return digest

    def submit_job(self, context: Any) -> dict[str, Any]:
        hub, job, run_key = self._bind()
        digest = self._bundle(context)
        hook = WestHubHook(hub)
        hook.put_params(run_key, job, dict(self.plan.get("params") or {}), digest)
        submitted = hook.submit_job(run_key, job, digest)
        self.log.info(
            "job %s of bundle %s for run %s runs on hub %s (process group %s)",
            job,
            digest[:12],
            run_key,
            hub,
            submitted.get("pid"),
        )
        return {"hub": hub, "run_key": run_key, "job": job, "bundle": digest, "submitted": time.time()}

    def get_job_status(self, external_id: Any, context: Any) -> str:
        hub, job, run_key = self._bind()
        known = (
            (external_id.get("hub"), external_id.get("run_key"), external_id.get("bundle"))
            if isinstance(external_id, dict)
            else None
        )
        if known != (hub, run_key, self._bundle(context)):
            return "stale"  # a job of another plan or of other job code (shipped again since): start this one
        return str(WestHubHook(hub).job_status(run_key, job)["state"])

    def is_job_active(self, status: str) -> bool:
        return status == jobctl.RUNNING

    def is_job_succeeded(self, status: str) -> bool:
        return status == jobctl.SUCCEEDED

    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        hub, job, run_key = external_id["hub"], external_id["job"], external_id["run_key"]
        deadline = external_id["submitted"] + self.timeout if self.timeout else None
        if self.deferrable:
            self.defer(
                trigger=WestJobTrigger(hub, run_key, job, 0, self.poll_interval, deadline, self.lost_after),
                method_name="execute_complete",
            )
        event = self._watch(JobWatch(hub, run_key, job), deadline)
        self.execute_complete(context, event)

    def get_job_result(self, external_id: Any, context: Any) -> dict[str, Any]:
        return {"hub": external_id["hub"], "job": external_id["job"], "state": jobctl.SUCCEEDED}

    # -- watching ---------------------------------------------------------------------------------

    def _watch(self, watch: JobWatch, deadline: float | None) -> dict[str, Any]:
        """The synchronous path: the trigger's loop, holding the worker slot."""
        failing_since = None
        polls = 0
        try:
            while True:
                if deadline is not None and time.time() > deadline:
                    return {"status": "timeout", "message": "the job ran past its timeout"}
                try:
                    status, output = watch.poll()
                except HostKeyMismatch as exc:
                    return {"status": "error", "message": str(exc)}
                except HubError as exc:
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > self.lost_after:
                        return {"status": "lost", "message": str(exc)}
                    time.sleep(self.poll_interval)
                    continue
                failing_since = None
                for line in output.decode("utf-8", "replace").splitlines():
                    self.log.info("[%s] %s", watch.hub, line)
                if status["state"] != jobctl.RUNNING:
                    return {
                        "status": status["state"],
                        "message": status.get("message"),
                        "exit_code": status.get("exit_code"),
                    }
                polls += 1
                time.sleep(poll_delay(polls, self.poll_interval))
        finally:
            watch.close()

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        hub, job, run_key = self._bind()
        status = (event or {}).get("status")
        if status == jobctl.SUCCEEDED:
            self.log.info("job %s for run %s on hub %s succeeded", job, run_key, hub)
            return {"hub": hub, "job": job, "state": status}
        if status in ("timeout", "lost"):
            self.log.warning("%s; killing the job's process group", event.get("message"))
            self._kill(hub, job, run_key)
            why = (
                f"ran past its timeout of {timedelta(seconds=self.timeout or 0)}"
                if status == "timeout"
                else f"lost its monitor ({event.get('message')})"
            )
            raise AirflowException(
                f"job {job} for run {run_key} on hub {hub} {why}; its process group was killed if the hub "
                "could be reached, and a retry re-attaches to it otherwise"
            )
        try:
            tail = WestHubHook(hub).job_log_tail(run_key, job).strip()
        except HubError as exc:
            tail = f"(the job's output could not be read: {exc})"
        raise AirflowException(
            f"job {job} for run {run_key} on hub {hub} failed: {(event or {}).get('message')}. "
            f"Last output of the job:\n{tail}"
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        if next_method == "__fail__":  # the trigger failed or timed out: do not leave the job running
            self.log.warning("the job's monitor failed; killing its process group")
            self.on_kill()
        return super().resume_execution(next_method, next_kwargs, context)

    def _kill(self, hub: str, job: str, run_key: str) -> None:
        try:
            WestHubHook(hub).kill_job(run_key, job)
        except HubError as exc:
            self.log.warning(
                "could not kill job %s on hub %s (%s); a retry re-attaches to it if it runs", job, hub, exc
            )

    def on_kill(self) -> None:
        try:
            hub, job, run_key = self._bind()
        except Exception as exc:
            self.log.warning("cannot tell which job to kill: %s", exc)
            return
        self._kill(hub, job, run_key)
