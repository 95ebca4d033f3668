"""Wait, deferred, until a run's inputs are complete; then let the run go on, or fail once saying what is missing.

:class:`WaitForData` is the task between ``plan`` and ``extract``. It asks every input whether its
data for the plan's days is complete (:func:`eastwest.east.steps.missing_data`: the source's own
signal, such as an SQL input's ``ready_sql`` or a landing input's ``marker`` file, else "at least
one row / one file per day"). While something is missing it defers on a :class:`RecheckTrigger`
(a timer, like Airflow's ``TimeDeltaTrigger``, that also carries the wait's state) and checks again,
so a waiting run holds no worker slot. When the wait's bound passes it fails once
(:class:`AirflowFailException`), naming each input and day that is still missing.

Runs the scheduler or a person starts for a scheduled DAG (run types ``scheduled`` and ``manual``)
wait; backfills (past days: waiting hours per missing day would stall them) check once, and so does
every run of a DAG whose ``wait_for_data`` is zero (the analyst DAGs' default).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from eastwest.east import sources, steps
from eastwest.east.plan import Plan

#: How long after the wait's bound a deferral may go unanswered (a triggerer down or restarting)
#: before the scheduler resumes the task anyway for a last check.
TRIGGER_GRACE = timedelta(minutes=5)
#: At most this many missing items are listed in the failure message (the rest are counted).
MAX_LISTED = 12


def _span(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return " ".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "min"), (secs, "s")) if n) or "0s"


class RecheckTrigger(BaseTrigger):
    """Fire at ``moment`` (epoch seconds) with ``state`` as the event's payload.

    The state (when the wait started, its deadline, how many checks) travels in the event rather
    than only in the deferral's kwargs, which ``dag.test()`` replaces with the event.
    """

    def __init__(self, moment: float, state: dict[str, Any]) -> None:
        super().__init__()
        self.moment = float(moment)
        self.state = dict(state)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"moment": self.moment, "state": self.state})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while (remaining := self.moment - time.time()) > 0:  # re-read the clock: it may jump
            await asyncio.sleep(min(remaining, 60.0))
        yield TriggerEvent(self.state)


class WaitForData(BaseOperator):
    """Wait until the plan's inputs are complete, for at most ``wait``; check every ``poll_interval``.

    :param plan: the run's plan (``Plan.to_dict()``), usually the plan task's output (templated).
    :param run_context: the DAG's :class:`eastwest.east.steps.RunContext` (workload, project, settings).
    :param wait: how long a waiting run waits, from its first check; ``timedelta(0)`` checks once.
    :param poll_interval: time between checks while waiting.
    """

    template_fields: Sequence[str] = ("plan",)
    ui_color = "#dbe8f5"
    #: The run types that wait; any other run checks once and fails at once if data is missing.
    waiting_run_types: tuple[str, ...] = ("scheduled", "manual")

    def __init__(
        self,
        *,
        plan: Any,
        run_context: steps.RunContext,
        wait: timedelta,
        poll_interval: timedelta = timedelta(minutes=5),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if wait < timedelta(0) or poll_interval <= timedelta(0):
            raise ValueError("wait must be zero or more and poll_interval more than zero")
        self.plan = plan
        self.run_context = run_context
        self.wait = wait
        self.poll_interval = poll_interval

    def waits_for(self, run_type: str) -> timedelta:
        """How long a run of ``run_type`` waits."""
        return self.wait if run_type in self.waiting_run_types else timedelta(0)

    def execute(self, context: Any) -> dict[str, Any]:
        run_type = getattr(context["dag_run"], "run_type", None)
        run_type = str(getattr(run_type, "value", run_type) or "")
        wait = self.waits_for(run_type)
        if self.wait and not wait:
            self.log.info("a %s run does not wait for its data: checking once", run_type)
        now = time.time()
        return self._check(started=now, deadline=now + wait.total_seconds(), checks=0, run_type=run_type)

    def check_again(
        self,
        context: Any,
        event: Any = None,
        started: float = 0.0,
        deadline: float = 0.0,
        checks: int = 0,
        run_type: str = "",
    ) -> dict[str, Any]:
        """Where the task resumes after each deferral (the state is in the event, and in the kwargs)."""
        state: dict[str, Any] = {"started": started, "deadline": deadline, "checks": checks, "run_type": run_type}
        if isinstance(event, dict):
            state.update({k: event[k] for k in state if k in event})
        return self._check(
            started=float(state["started"]),
            deadline=float(state["deadline"]),
            checks=int(state["checks"]),
            run_type=str(state["run_type"]),
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        if next_method == "__fail__":  # the trigger failed, or nobody ran it in time: one last check
            self.log.warning("the wait's trigger did not fire in time (%s); checking a last time", next_kwargs)
            return self._check(
                started=time.time(),
                deadline=0.0,
                checks=0,
                run_type="",
                why=" The wait's trigger did not fire in time: check that `airflow triggerer` is running.",
            )
        return super().resume_execution(next_method, next_kwargs, context)

    def _check(self, *, started: float, deadline: float, checks: int, run_type: str, why: str = "") -> dict[str, Any]:
        plan = Plan.from_dict(self.plan)
        try:
            lacking = steps.missing_data(self.run_context, plan)
        except sources.InputError as exc:  # the declaration cannot work: waiting will not help
            raise AirflowFailException(str(exc)) from exc
        checks += 1
        waited = time.time() - started
        if not lacking:
            self.log.info("the data of %s is complete (check %s, after %s)", plan.describe(), checks, _span(waited))
            return {"complete": True, "checks": checks, "waited_seconds": round(waited, 3)}
        remaining = deadline - time.time()
        if remaining <= 0:
            waiting = self.waits_for(run_type) > timedelta(0)
            raise AirflowFailException(self._message(plan, lacking, waited if waiting else None, run_type, why))
        delay = min(self.poll_interval.total_seconds(), remaining)
        self.log.info(
            "waiting for %s: %s; next check in %s, giving up at %s",
            plan.describe(),
            "; ".join(lacking[:MAX_LISTED]),
            _span(delay),
            datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds"),
        )
        state = {"started": started, "deadline": deadline, "checks": checks, "run_type": run_type}
        self.defer(
            trigger=RecheckTrigger(time.time() + delay, state),
            method_name="check_again",
            kwargs=state,
            timeout=timedelta(seconds=remaining) + TRIGGER_GRACE,
        )

    def _message(self, plan: Plan, lacking: list[str], waited: float | None, run_type: str, why: str) -> str:
        listed = "; ".join(lacking[:MAX_LISTED])
        if len(lacking) > MAX_LISTED:
            listed += f"; and {len(lacking) - MAX_LISTED} more"
        if waited is not None:
            how = f"still incomplete after waiting {_span(waited)} (wait_for_data={_span(self.wait.total_seconds())})"
        elif self.wait and run_type:
            how = f"incomplete, and a {run_type} run does not wait for it"
        else:
            how = "incomplete"
        return (
            f"the data of {plan.run_key} ({plan.describe()}) is {how}: {listed}. Nothing was extracted or "
            f"published. Load the missing data (or write the marker file), then clear this run to try again.{why}"
        )
