"""The energy forecast end to end with dag.test(): train in the west, register and gate the model,
forecast with the champion (east and hub agree), score the forecast the next day."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pendulum
import pytest

from conftest import FORECAST_MACHINES, FORECAST_WEEK, ROOT, TEST_HOME, east_on_postgres, load_dag
from eastwest.east import arrowdb, models, sql
from eastwest.east.plan import utc_start
from eastwest.settings import get_settings

pytestmark = pytest.mark.integration

MODEL = "energy_forecast"
TZ = "Asia/Shanghai"
THROUGH = FORECAST_WEEK + timedelta(days=6)  # the training's last day (a Sunday)
MADE_ON = THROUGH  # the nightly forecast made from that day's data, for the next day
FORECAST_DAY = MADE_ON + timedelta(days=1)


@pytest.fixture(scope="module")
def east(forecast_east, hubs, airflow_db, tmp_path_factory):
    """PostgreSQL holds four weeks of readings; the registry and the forecast tables start empty."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EASTWEST_DATA_DIR", str(tmp_path_factory.mktemp("forecast-data")))
    mp.setenv("EASTWEST_PROJECT_DIR", str(ROOT))  # the test DAG in tests/dags uses the project's jobs
    with east_on_postgres(forecast_east), arrowdb.connect(forecast_east) as conn:
        cursor = conn.cursor()
        for table in ("models", "energy_forecast", "forecast_scores"):
            cursor.execute(f'DROP TABLE IF EXISTS "{table}"')
        cursor.close()
        conn.commit()
    with east_on_postgres(forecast_east):
        yield forecast_east
    mp.undo()


def run_daily(dag_file: str, day: date, *, folder: str = "dags"):
    """A run of a daily DAG covering ``day`` (as the scheduler's run the next night would)."""
    after = day + timedelta(days=1)
    dag = load_dag(ROOT / folder / dag_file)
    return dag.test(logical_date=pendulum.datetime(after.year, after.month, after.day, 23, 59, tz=TZ))


def run_training(dag_file: str = "east_west_train_forecast.py", *, folder: str = "dags"):
    """The weekly training run of the week FORECAST_WEEK (Monday) .. THROUGH, with 21 days before it."""
    monday = THROUGH + timedelta(days=1)
    dag = load_dag(ROOT / folder / dag_file)
    return dag.test(logical_date=pendulum.datetime(monday.year, monday.month, monday.day, 23, 59, tz=TZ))


def report(run_key: str) -> dict:
    return json.loads((get_settings().reports_dir / run_key / "report.json").read_text())


def rows(url: str, query: str, **binds) -> list[dict]:
    return arrowdb.read_table(url, query, binds).to_pylist()


def test_forecast_without_a_champion_fails_at_once_saying_to_train_first(east, capfd) -> None:
    run = run_daily("east_west_forecast.py", MADE_ON)
    out = capfd.readouterr()
    assert run.state == "failed"
    waited = next(ti for ti in run.get_task_instances() if ti.task_id == "wait_for_data")
    assert (waited.state, waited.try_number) == ("failed", 1)  # no waiting, no retries: it cannot get better
    assert "model energy_forecast has no champion yet: run its training DAG first" in out.out + out.err


def test_training_registers_a_champion_that_beats_seasonal_naive_and_announces_it(east) -> None:
    run = run_training()
    assert run.state == "success"
    [version] = models.versions(east, MODEL)
    assert version["status"] == models.CHAMPION
    assert version["mape"] < 0.85 * version["baseline_mape"], version  # ≥ 15 % better than same-hour-last-week
    assert (version["train_start"], version["holdout_end"]) == (
        str(FORECAST_WEEK - timedelta(days=21)),
        str(THROUGH),
    )
    assert version["holdout_start"] == str(THROUGH - timedelta(days=6))  # the last 7 days held out
    assert version["hub"].startswith("west_") and len(version["bundle"]) == 64
    metrics = json.loads(version["metrics"])
    assert metrics["enterprises"] == FORECAST_MACHINES and metrics["champion_version"] is None
    champion = models.champion(east, MODEL, with_bytes=True)
    assert champion is not None and models.model_table(east, MODEL).column("version")[0].as_py() == champion["version"]

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == "eastwest://models/energy_forecast")
            .all()
        )
        extras = [e.extra for e in events]
    assert {"version": champion["version"], "champion": champion["version"], "through": str(THROUGH)}.items() <= (
        extras[-1].items()
    )


def test_a_weaker_model_stays_a_candidate_and_a_rerun_registers_nothing(east) -> None:
    champion = models.champion(east, MODEL)
    assert champion is not None
    weak = run_training("east_west_train_forecast_weak.py", folder="tests/dags")
    assert weak.state == "success"
    found = {v["version"]: v for v in models.versions(east, MODEL)}
    assert len(found) == 2
    [candidate] = [v for v in found.values() if v["version"] != champion["version"]]
    assert candidate["status"] == models.CANDIDATE
    assert candidate["champion_version"] == champion["version"]  # scored on the same held-out days
    assert candidate["reason"].startswith("does not beat"), candidate["reason"]
    assert found[champion["version"]]["status"] == models.CHAMPION

    again = run_training()  # the same data and code give the same bytes: nothing new to register
    assert again.state == "success"
    assert {v["version"]: v["status"] for v in models.versions(east, MODEL)} == {
        k: v["status"] for k, v in found.items()
    }
    summary = report(f"east_west_train_forecast.nightly.{FORECAST_WEEK:%Y%m%d}-{THROUGH + timedelta(days=1):%Y%m%d}")
    assert "registered already" in summary["warehouse"]


def test_forecast_with_the_champion_is_complete_bounded_and_the_east_agrees(east) -> None:
    import polars as pl

    from eastwest.west import jobs

    run = run_daily("east_west_forecast.py", MADE_ON)
    assert run.state == "success"
    champion = models.champion(east, MODEL, with_bytes=True)
    assert champion is not None
    published = rows(
        east, 'SELECT * FROM "energy_forecast" WHERE "made_on" = :day ORDER BY "enterprise_id", "hour"', day=MADE_ON
    )
    assert len(published) == 24 * FORECAST_MACHINES
    assert {str(r["day"]) for r in published} == {str(FORECAST_DAY)}
    assert {r["model_version"] for r in published} == {champion["version"]}
    assert all(0 <= r["energy_kwh"] <= r["capacity_kwh"] for r in published)

    # The same ONNX bytes, loaded in the east with onnxruntime, give the hub's numbers.
    start, end = utc_start(MADE_ON - timedelta(days=7), TZ), utc_start(MADE_ON + timedelta(days=1), TZ)
    query = sql.render_file(ROOT / "sql" / "source" / "extract_machine_power.sql")
    readings = pl.from_arrow(arrowdb.read_table(east, query, {"start": start, "end": end}))
    job = jobs.load_module(ROOT / "include" / "jobs", "energy_forecast")
    here = job.forecast(readings, bytes(champion["onnx"]), TZ)
    hub = pl.DataFrame({k: [r[k] for r in published] for k in ("enterprise_id", "hour", "energy_kwh")})
    joined = hub.join(
        here.select("enterprise_id", "hour", pl.col("energy_kwh").alias("east")), on=["enterprise_id", "hour"]
    )
    assert joined.height == hub.height
    assert (joined["energy_kwh"] - joined["east"]).abs().max() < 1e-5


def test_a_hub_that_lost_its_copy_of_the_model_gets_it_shipped_again(east) -> None:
    key = f"east_west_forecast.nightly.{MADE_ON:%Y%m%d}-{FORECAST_DAY:%Y%m%d}"
    hub = report(key)["hub"]
    chunks = TEST_HOME / "hubs" / hub / "root" / "chunks"
    lost = [p for p in chunks.rglob("*") if p.is_file()]
    assert lost, f"no chunks on {hub}"
    for path in lost:  # the hub lost everything it held: the model and the readings
        path.unlink()
    after = FORECAST_DAY  # as run_daily(MADE_ON), pinned to the hub
    dag = load_dag(ROOT / "dags" / "east_west_forecast.py")
    run = dag.test(
        logical_date=pendulum.datetime(after.year, after.month, after.day, 23, 59, tz=TZ), run_conf={"hub": hub}
    )
    assert run.state == "success"
    again = report(key)
    assert again["hub"] == hub and again["chunks_skipped"] == 0 and again["wire_mb_sent"] > 0, again
    assert "unchanged" in again["warehouse"]  # the same model on the same data: the same forecast


def test_scoring_records_the_realised_error_of_the_day(east) -> None:
    run = run_daily("east_west_forecast_score.py", FORECAST_DAY)
    assert run.state == "success"
    [score] = rows(east, 'SELECT * FROM "forecast_scores" WHERE "day" = :day', day=FORECAST_DAY)
    champion = models.champion(east, MODEL)
    assert champion is not None and score["model_version"] == champion["version"]
    assert score["hours"] == 24 * FORECAST_MACHINES

    # By hand: actual hourly energy from the source against the published forecast.
    start, end = utc_start(FORECAST_DAY, TZ), utc_start(FORECAST_DAY + timedelta(days=1), TZ)
    actual: dict[tuple[str, int], float] = {}
    for r in rows(
        east, "SELECT ts, enterprise_id, power_kw FROM readings WHERE ts >= :start AND ts < :end", start=start, end=end
    ):
        hour = pendulum.instance(r["ts"].replace(tzinfo=pendulum.UTC)).in_tz(TZ).hour
        actual[(r["enterprise_id"], hour)] = actual.get((r["enterprise_id"], hour), 0.0) + (r["power_kw"] or 0.0) / 60
    forecast = rows(east, 'SELECT * FROM "energy_forecast" WHERE "day" = :day', day=FORECAST_DAY)
    errors = [abs(actual[(f["enterprise_id"], f["hour"])] - f["energy_kwh"]) for f in forecast]
    assert score["mae"] == pytest.approx(sum(errors) / len(errors), rel=1e-6)
