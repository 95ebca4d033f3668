"""A test-only DAG: installs the real job bundle on a hub but ships no inputs, so the daily_kpis job fails."""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from eastwest.airflow.operators import WestJobOperator

HUB = "west_guizhou"
RUN_KEY = "test_west_job_failure.nothing-shipped.20261124-20261125"
JOBS_DIR = Path(__file__).resolve().parents[2] / "include" / "jobs"

with DAG(
    "test_west_job_failure",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1),
    catchup=False,
    tags=["test"],
    default_args={"retries": 0},
) as dag:

    @task
    def plan() -> dict:
        """A plan with the fields of ``eastwest.east.plan.Plan`` for a run that ships nothing."""
        return {
            "dag_id": "test_west_job_failure",
            "scope": "nothing-shipped",
            "run_key": RUN_KEY,
            "hub": HUB,
            "job": "daily_kpis",
            "params": {},
            "start": "2026-11-23T16:00:00",
            "end": "2026-11-24T16:00:00",
            "start_day": "2026-11-24",
            "end_day": "2026-11-25",
        }

    @task
    def ship() -> dict:
        """Ship and install the project's job bundle on the hub, and nothing else (no inputs)."""
        import tempfile

        from eastwest.hub.transfer import TransferEngine
        from eastwest.west import wire

        with tempfile.TemporaryDirectory() as tmp:
            digest = TransferEngine(HUB).push_bundle(RUN_KEY, JOBS_DIR, wire.ChunkStore(Path(tmp)))
        return {"bundle": digest}

    shipped = ship()
    compute = WestJobOperator(task_id="compute", plan=plan(), bundle_task="ship")
    shipped >> compute
