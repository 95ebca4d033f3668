"""The real stack: a training run's asset event starts the forecast DAG, which forecasts from the
day the model was trained through; the asset links the two DAGs (the lineage the UI draws)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from conftest import FORECAST_MACHINES, FORECAST_WEEK
from eastwest.east import arrowdb, models

pytestmark = pytest.mark.integration

TRAIN, FORECAST = "east_west_train_forecast", "east_west_forecast"
THROUGH = FORECAST_WEEK + timedelta(days=6)
ASSET_URI = "eastwest://models/energy_forecast"


def finish(stack, dag_id: str, run_id: str, timeout: float) -> str:
    """Wait for a run, failing the runs the scheduler starts for the latest intervals meanwhile:
    unpausing a scheduled DAG starts its latest interval, which has no data in this test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for other in (TRAIN, FORECAST):
            stack.fail_runs(other, "scheduled")
        state = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(2)
    raise AssertionError(f"run {run_id} of {dag_id} did not finish within {timeout:.0f}s")


def test_a_trained_model_starts_the_forecast_through_its_asset(local_stack, forecast_east) -> None:
    local_stack.wait_for_dag(FORECAST)
    local_stack.request("PATCH", f"/api/v2/dags/{FORECAST}", {"is_paused": False})
    before = {r["dag_run_id"] for r in local_stack.runs(FORECAST, "asset_triggered")}
    monday = THROUGH + timedelta(days=1)  # 23:59 Asia/Shanghai that Monday: the week that just ended
    run_id = local_stack.trigger(TRAIN, {}, logical_date=f"{monday:%Y-%m-%d}T15:59:00Z")
    try:
        assert finish(local_stack, TRAIN, run_id, timeout=900) == "success"
        champion = models.champion(forecast_east, "energy_forecast")
        assert champion is not None

        deadline, started = time.monotonic() + 120, []
        while time.monotonic() < deadline and not started:
            started = [r for r in local_stack.runs(FORECAST, "asset_triggered") if r["dag_run_id"] not in before]
            time.sleep(2)
        assert started, "the model's asset event started no forecast run"
        assert finish(local_stack, FORECAST, started[0]["dag_run_id"], timeout=600) == "success"
    finally:
        for dag_id in (TRAIN, FORECAST):
            local_stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})

    published = arrowdb.read_table(
        forecast_east,
        'SELECT "day", "model_version" FROM "energy_forecast" WHERE "made_on" = :day AND "scope" = \'nightly\'',
        {"day": THROUGH},
    ).to_pylist()
    assert len(published) == 24 * FORECAST_MACHINES
    assert {str(r["day"]) for r in published} == {str(THROUGH + timedelta(days=1))}
    assert {r["model_version"] for r in published} == {champion["version"]}

    [asset] = [a for a in local_stack.request("GET", "/api/v2/assets")["assets"] if a["uri"] == ASSET_URI]
    assert (TRAIN, "publish") in {(t["dag_id"], t["task_id"]) for t in asset["producing_tasks"]}
    assert {d["dag_id"] for d in asset["scheduled_dags"]} == {FORECAST}  # training does not run on its own model
    assert not local_stack.runs(TRAIN, "asset_triggered")
    events = local_stack.request("GET", f"/api/v2/assets/events?asset_id={asset['id']}")["asset_events"]
    assert events and events[-1]["extra"]["through"] == str(THROUGH)
