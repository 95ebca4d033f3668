"""Operators that run registered Polars jobs on western hubs.

:class:`WestJobOperator` is the provider's :class:`SSHRemoteJobOperator` (detached remote job,
deferrable, remote log streamed to the task log, process-group kill on cancel) bound to the western
runner: it stores the job's parameters on the hub as JSON (the hub checks them against what the
job declares), then runs ``eastwest.west.runner run RUN JOB --bundle DIGEST`` with validated,
quoted arguments; the bundle digest is the one the ``ship`` task installed. Nothing a user types
reaches the remote shell.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException
from airflow.providers.ssh.operators.ssh_remote_job import SSHRemoteJobOperator

from eastwest.hub.hook import WestHubHook
from eastwest.settings import get_settings
from eastwest.west import protocol
from eastwest.west.protocol import check_name


class WestJobOperator(SSHRemoteJobOperator):
    """Run a job of the shipped bundle on a western hub against a run's shipped datasets.

    :param plan: the run's plan (``eastwest.east.plan.Plan.to_dict()``), usually the output of the
        DAG's plan task (templated). It names the hub, the job, the run key and the job parameters.
    :param bundle_task: the task whose return value names the installed job bundle (``bundle``).
    :param kwargs: passed to :class:`SSHRemoteJobOperator` (``timeout``, ``poll_interval``, …).
    """

    template_fields: Sequence[str] = (*SSHRemoteJobOperator.template_fields, "plan")
    ui_color = "#f0e6c8"

    def __init__(self, *, plan: Any, bundle_task: str = "ship", poll_interval: int = 2, **kwargs: Any) -> None:
        kwargs.setdefault("cleanup", "on_success")
        super().__init__(
            ssh_conn_id="west_pending",
            command="eastwest.west.runner run",
            remote_os="posix",
            poll_interval=poll_interval,
            **kwargs,
        )
        self.plan = plan
        self.bundle_task = bundle_task

    def _bind(self) -> tuple[str, str, str]:
        """Check the rendered plan and point the operator at its hub; return (hub, job, run key)."""
        if not isinstance(self.plan, dict):
            raise AirflowException(f"{self.task_id}: plan must be a dict, got {type(self.plan).__name__}")
        hub, job, run_key = self.plan.get("hub"), self.plan.get("job"), self.plan.get("run_key")
        hubs = get_settings().hubs
        if hub not in hubs:
            raise AirflowException(f"hub {hub!r} is not configured; choose one of {', '.join(hubs)}")
        hub, job, run_key = str(hub), check_name("job", str(job)), check_name("run key", str(run_key))
        self.ssh_conn_id = hub
        self.remote_base_dir = self.west_hook.jobs_dir
        return hub, job, str(run_key)

    @cached_property
    def ssh_hook(self) -> WestHubHook:
        """The hub's hook: submission, kill and cleanup go through the pinned-key checks too."""
        return WestHubHook(
            self.ssh_conn_id,
            conn_timeout=self.conn_timeout,
            banner_timeout=self.banner_timeout,
            conn_retry_attempts=self.conn_retry_attempts,
        )

    @property
    def west_hook(self) -> WestHubHook:
        return self.ssh_hook

    def execute(self, context: Any) -> None:
        hub, job, run_key = self._bind()
        shipped = context["ti"].xcom_pull(task_ids=self.bundle_task) or {}
        digest = str(shipped.get("bundle") or "")
        if not protocol.SHA256_HEX.fullmatch(digest):
            raise AirflowException(f"{self.bundle_task} did not report an installed job bundle; rerun it first")
        self.west_hook.put_params(run_key, job, dict(self.plan.get("params") or {}), digest)
        self.command = self.west_hook.runner_command(protocol.RUN, run_key, job, "--bundle", digest)
        self.log.info("running job %s of bundle %s for run %s on hub %s", job, digest[:12], run_key, hub)
        super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        hub, job, run_key = self._bind()
        if event and event.get("done") and event.get("exit_code") is None:
            # The monitor gave up (hub unreachable too long): do not leave the job running for a
            # retry to collide with.
            self.log.warning("lost track of the remote job (%s); killing it", event.get("message"))
            self.on_kill()
        try:
            super().execute_complete(context, event)
        except AirflowException as exc:
            if not event or not event.get("done"):
                raise
            tail = self.west_hook.tail_job_log(str(event.get("log_file", "")))
            raise AirflowException(
                f"job {job} for run {run_key} on hub {hub} failed ({exc}). Last output of the job:\n{tail.strip()}"
            ) from exc

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        if next_method == "__fail__":  # the trigger timed out or failed: do not leave the job running
            self.log.warning("the remote job timed out or lost its monitor; killing its process group")
            self.on_kill()
        return super().resume_execution(next_method, next_kwargs, context)

    def on_kill(self) -> None:
        try:
            self._bind()
        except Exception as exc:  # still try the provider's kill with what it has
            self.log.warning("could not bind the plan before killing the remote job: %s", exc)
        super().on_kill()
