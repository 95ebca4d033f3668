"""The operator that runs a registered Polars job on a western hub.

Hubs let the east's key run the runner and nothing else, so the compute step cannot use
``SSHRemoteJobOperator``'s shell wrapper. :class:`WestJobOperator` keeps its properties with the
runner's own job control (:mod:`eastwest.west.jobctl`): the job is submitted detached in its own
process group, a deferrable trigger watches it and streams its output into the task log, a non-zero
exit fails the task with the job's last output, and a kill, a timeout or a lost monitor kills the
process group. It is a :class:`ResumableJobMixin` operator: a retry re-attaches to a job that is
still running, or takes the result of one that finished, instead of starting a second one.

The run's hub comes from its placement (:mod:`eastwest.east.placing`). The DAG has one compute task
per hub, each in that hub's pool, and the ship step branches to the placed hub's. A retry after
the hub failed (unreachable past ``lost_after``, the job killed) places the run again, ships its
data to the new hub and runs the job there; the task keeps the pool slot it started with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, BaseOperator, ResumableJobMixin

from eastwest.airflow.triggers import WestJobTrigger
from eastwest.east import placing
from eastwest.east.plan import Plan
from eastwest.east.steps import RunContext
from eastwest.hub import jobs
from eastwest.hub.errors import HubError
from eastwest.settings import get_settings
from eastwest.west import jobctl, protocol
from eastwest.west.protocol import check_name


def _hub_hook(hub: str) -> Any:
    """A hook on ``hub``, importing SSH only when a task runs (a DAG file must parse fast)."""
    from eastwest.hub.hook import WestHubHook

    return WestHubHook(hub)


class WestJobOperator(ResumableJobMixin, BaseOperator):
    """Run a job of the shipped bundle on the run's western hub against its shipped datasets.

    :param plan: the run's plan (``eastwest.east.plan.Plan.to_dict()``), usually the output of the
        DAG's plan task (templated). It names the job, the run key and the job parameters.
    :param run_context: the DAG's run context (workload, project, settings): the run's hub and
        shipped bundle come from its placement record, and a failed hub fails over. Without it the
        operator runs on the plan's ``hub`` with the bundle that ``bundle_task`` returned.
    :param bundle_task: without a run context, the task whose return value names the bundle.
    :param timeout: seconds the job may run before it is killed (None: no limit).
    :param poll_interval: seconds to wait after a failed status poll (a poll waits on the hub for
        the job to end, so its end is noticed at once).
    :param lost_after: seconds the hub may be unreachable before the watch gives up: the hub counts
        as failed, the job is killed if the hub can be told, and a retry places the run elsewhere
        (a run that named its hub re-attaches to the job instead).
    :param deferrable: watch from the triggerer (default) instead of holding a worker slot.
    """

    template_fields: Sequence[str] = ("plan",)
    ui_color = "#f0e6c8"
    external_id_key = "eastwest_west_job"

    def __init__(
        self,
        *,
        plan: Any,
        run_context: RunContext | None = None,
        bundle_task: str = "ship",
        timeout: int | None = None,
        poll_interval: float = 2.0,
        lost_after: float = 120.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.run_context = run_context
        self.bundle_task = bundle_task
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.lost_after = lost_after
        self.deferrable = deferrable

    def _plan(self) -> Plan:
        if not isinstance(self.plan, dict):
            raise AirflowException(f"{self.task_id}: plan must be a dict, got {type(self.plan).__name__}")
        return Plan.from_dict(self.plan)

    def _bind(self) -> tuple[str, str, str]:
        """The rendered plan's (hub the run is on now, job, run key)."""
        if not isinstance(self.plan, dict):
            raise AirflowException(f"{self.task_id}: plan must be a dict, got {type(self.plan).__name__}")
        job, run_key = (
            check_name("job", str(self.plan.get("job"))),
            check_name("run key", str(self.plan.get("run_key"))),
        )
        if self.run_context is not None:
            return placing.current(self.run_context, self._plan()), job, run_key
        hub, hubs = self.plan.get("hub"), get_settings().hubs
        if hub not in hubs:
            raise AirflowException(f"hub {hub!r} is not configured; choose one of {', '.join(hubs)}")
        return str(hub), job, run_key

    def execute(self, context: Any) -> Any:
        from eastwest.east import steps

        ctx = self.run_context
        if ctx is None:
            self._bind()
            return self.execute_resumable(context)
        plan = self._plan()
        with placing.on_hub(ctx, plan, placing.COMPUTE) as hub:  # a failed hub is left here (failover)
            record = placing.load(ctx, plan) or {}
            if hub not in record.get("shipped", {}):
                self.log.warning("hub %s does not hold this run's data yet (failover): shipping it there first", hub)
                steps.ship_to(ctx, plan, hub)
            return self.execute_resumable(context)

    # -- ResumableJobMixin ------------------------------------------------------------------------

    def _bundle(self, context: Any, hub: str) -> str:
        """The digest of the job bundle shipped to ``hub`` for this run."""
        if self.run_context is None:
            shipped = context["ti"].xcom_pull(task_ids=self.bundle_task) or {}
            digest = str(shipped.get("bundle") or "")
        else:
            digest = str((placing.load(self.run_context, self._plan()) or {}).get("shipped", {}).get(hub) or "")
        if not protocol.SHA256_HEX.fullmatch(digest):
            raise AirflowException(f"no job bundle was shipped to hub {hub} for this run; clear the ship task")
        return digest

    def _mark(self, what: str, hub: str, value: Any) -> None:
        if self.run_context is not None:
            placing.mark(self.run_context, self._plan(), what, hub, value)

    def submit_job(self, context: Any) -> dict[str, Any]:
        hub, job, run_key = self._bind()
        digest = self._bundle(context, hub)
        submitted = jobs.submit(hub, run_key, job, digest, dict(self.plan.get("params") or {}))
        if self.run_context is not None:
            placing.release(self.run_context, self._plan())  # the hub's own queue counts it from now on
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
        if known != (hub, run_key, self._bundle(context, hub)):
            return "stale"  # a job on another hub, of another plan or of other job code: start this one
        return str(_hub_hook(hub).job_status(run_key, job)["state"])

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
        event = jobs.watch(
            jobs.JobWatch(hub, run_key, job),
            deadline=deadline,
            poll_interval=self.poll_interval,
            lost_after=self.lost_after,
            emit=self.log.info,
        )
        self.execute_complete(context, event)

    def get_job_result(self, external_id: Any, context: Any) -> dict[str, Any]:
        self._mark("computed", external_id["hub"], True)
        return {"hub": external_id["hub"], "job": external_id["job"], "state": jobctl.SUCCEEDED}

    # -- the job's end ------------------------------------------------------------------------------

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        hub, job, run_key = self._bind()
        event = event or {}
        status = event.get("status")
        if status == jobctl.SUCCEEDED:
            self._mark("computed", hub, True)
            self.log.info("job %s for run %s on hub %s succeeded", job, run_key, hub)
            return {"hub": hub, "job": job, "state": status}
        if status in ("timeout", "lost"):
            self.log.warning("%s; killing the job's process group", event.get("message"))
            self._kill(hub, job, run_key)
            why = (
                f"ran past its timeout of {timedelta(seconds=self.timeout or 0)}"
                if status == "timeout"
                else f"lost its hub ({event.get('message')})"
            )
            message = f"job {job} for run {run_key} on hub {hub} {why}; its process group was killed if the hub could be reached"
        else:
            try:
                tail = _hub_hook(hub).job_log_tail(run_key, job).strip()
            except HubError as exc:
                tail = f"(the job's output could not be read: {exc})"
            message = f"job {job} for run {run_key} on hub {hub} failed: {event.get('message')}. Last output of the job:\n{tail}"
            if self.run_context is not None:  # which model versions the job was given, by name
                from eastwest.east import steps

                shipped = steps.model_versions(self.run_context, self._plan())
                message += "".join(f"\n(input {k} was model {v})" for k, v in shipped.items())
        if jobs.hub_failed(event) and self.run_context is not None:  # not the job's error: the retry moves
            placing.record_failure(self.run_context, self._plan(), hub, placing.COMPUTE, str(event.get("message")))
        raise AirflowException(message)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        if next_method == "__fail__":  # the trigger failed or timed out: do not leave the job running
            self.log.warning("the job's monitor failed; killing its process group")
            self.on_kill()
        return super().resume_execution(next_method, next_kwargs, context)

    def _kill(self, hub: str, job: str, run_key: str) -> None:
        try:
            _hub_hook(hub).kill_job(run_key, job)
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
