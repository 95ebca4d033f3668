"""The model registry and the declarations around it, without Airflow or hubs: the gate, idempotent
registration in one transaction (SQLite and PostgreSQL), the champion as a job's input, lookback
windows, and the plan of a run that a model's asset event started."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

import pyarrow as pa
import pytest

from conftest import ROOT
from eastwest import ModelInput, ModelTarget, SqlInput, Target, Workload, WorkloadError
from eastwest.east import arrowdb, models, sources
from eastwest.east.plan import scheduled_plan, utc_start
from eastwest.settings import Project, get_settings
from eastwest.west import jobs, wire


def trained(onnx: bytes, mape: float, *, baseline: float = 0.2, champion: str | None = None, on_same_days=None):
    """A training job's one-row result."""
    return pa.Table.from_pylist(
        [
            {
                "name": "energy_forecast", "version": hashlib.sha256(onnx).hexdigest(), "onnx": onnx,
                "train_start": "2026-07-06", "train_end": "2026-07-26", "holdout_start": "2026-07-27",
                "holdout_end": "2026-08-02", "mae": 1.0, "mape": mape, "baseline_mae": 2.0, "baseline_mape": baseline,
                "champion_version": champion, "champion_mape": on_same_days, "enterprises": 3,
            }
        ]
    )  # fmt: skip


REGISTER = {"name": "energy_forecast", "hub": "west_gansu", "dag_id": "train", "run_key": "k", "bundle": "b" * 64}


@pytest.fixture
def url(empty_warehouse):
    return empty_warehouse


def test_the_gate_promotes_only_what_beats_the_baseline_and_the_champion() -> None:
    champion = {"version": "c" * 64, "mape": 0.10}
    assert models.gate({"version": "a", "mape": 0.1, "baseline_mape": 0.2}, None)[0] == models.CHAMPION
    status, reason = models.gate({"version": "a", "mape": 0.2, "baseline_mape": 0.2}, None)
    assert status == models.CANDIDATE and "seasonal-naive" in reason  # a tie is not better
    status, reason = models.gate(
        {"version": "a", "mape": 0.09, "baseline_mape": 0.2, "champion_version": "c" * 64, "champion_mape": 0.08},
        champion,
    )
    assert status == models.CANDIDATE and "same held-out days" in reason and "0.0800" in reason
    status, reason = models.gate({"version": "a", "mape": 0.09, "baseline_mape": 0.2}, champion)
    assert status == models.CHAMPION and "other held-out days" in reason  # its own backtest, said so
    assert models.gate({"version": "a", "mape": float("nan"), "baseline_mape": 0.2}, None)[0] == models.CANDIDATE


def test_register_gates_retires_and_a_rerun_changes_nothing(url) -> None:
    with pytest.raises(models.NoChampion, match="run its training DAG first"):
        models.model_table(url, "energy_forecast")
    assert models.model_table(url, "energy_forecast", required=False).num_rows == 0

    first = models.register(url, trained(b"first", 0.10), **REGISTER)
    assert (first.status, first.changed, first.champion) == (models.CHAMPION, True, first.version)
    again = models.register(url, trained(b"first", 0.10), **REGISTER)
    assert (again.status, again.changed) == (models.CHAMPION, False)

    worse = models.register(url, trained(b"worse", 0.12, champion=first.version, on_same_days=0.11), **REGISTER)
    assert worse.status == models.CANDIDATE and worse.champion == first.version
    better = models.register(url, trained(b"better", 0.08, champion=first.version, on_same_days=0.11), **REGISTER)
    assert better.status == models.CHAMPION
    assert {v["version"]: v["status"] for v in models.versions(url, "energy_forecast")} == {
        first.version: models.RETIRED, worse.version: models.CANDIDATE, better.version: models.CHAMPION,
    }  # fmt: skip
    table = models.model_table(url, "energy_forecast")
    assert table.to_pylist() == [{"name": "energy_forecast", "version": better.version, "onnx": b"better"}]


def test_trainings_registering_at_once_leave_exactly_one_champion(url) -> None:
    """Four trainings finishing together, each better than the baseline: they take turns at the gate."""
    from test_warehouse import at_once

    done = at_once(4, lambda i: models.register(url, trained(f"m{i}".encode(), 0.10 - i / 100), **REGISTER))
    statuses = [v["status"] for v in models.versions(url, "energy_forecast")]
    assert len(statuses) == 4 and statuses.count(models.CHAMPION) == 1, statuses
    assert models.champion(url, "energy_forecast")["version"] == done[3].version  # the lowest MAPE won


def test_a_result_that_does_not_match_its_declaration_registers_nothing(url) -> None:
    bad = trained(b"bytes", 0.1).set_column(1, "version", pa.array(["0" * 64]))
    with pytest.raises(models.RegistryError, match="do not hash to the version"):
        models.register(url, bad, **REGISTER)
    with pytest.raises(models.RegistryError, match="ModelTarget is 'other'"):
        models.register(url, trained(b"bytes", 0.1), **{**REGISTER, "name": "other"})
    with pytest.raises(models.RegistryError, match="one model version"):
        models.register(url, pa.concat_tables([trained(b"a", 0.1), trained(b"b", 0.1)]), **REGISTER)
    assert models.versions(url, "energy_forecast") == []


def test_a_tampered_registry_row_is_never_shipped(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    done = models.register(url, trained(b"model", 0.1), **REGISTER)
    with arrowdb.connect(url) as conn:
        arrowdb.execute(conn, url, "UPDATE models SET onnx = :b", {"b": b"other"}).close()
        conn.commit()
    with pytest.raises(models.RegistryError, match=f"version {done.version}: the registry's bytes hash to"):
        models.model_table(url, "energy_forecast")


def test_the_champion_travels_as_the_same_chunk_every_time(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    monkeypatch.setenv("AIRFLOW_CONN_EAST_WAREHOUSE", url)
    models.register(url, trained(b"model" * 1000, 0.1), **REGISTER)
    item = ModelInput("model", model="energy_forecast")
    manifests = []
    for n in range(2):
        batches = list(sources.model_batches(item, get_settings()))
        manifests.append(wire.write_chunks(iter(batches), batches[0].schema, wire.ChunkStore(tmp_path / f"s{n}")))
    assert manifests[0] == manifests[1] and manifests[0].rows == 1  # content-addressed: sent to a hub once
    monkeypatch.setenv("AIRFLOW_CONN_EAST_WAREHOUSE", f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(sources.InputError, match="input model: model energy_forecast has no champion yet"):
        sources.missing(item, None, Project(ROOT), get_settings(), "Asia/Shanghai")  # type: ignore[arg-type]
    optional = ModelInput("model", model="energy_forecast", required=False)
    [empty] = list(sources.model_batches(optional, get_settings()))
    assert empty.num_rows == 0 and empty.schema == models.model_schema()  # the job falls back to its baseline


def test_a_new_model_starts_the_forecast_but_never_its_own_training() -> None:
    from airflow.sdk.definitions.timetables.assets import AssetOrTimeSchedule

    from conftest import load_dag

    forecast = load_dag(ROOT / "dags" / "east_west_forecast.py")
    training = load_dag(ROOT / "dags" / "east_west_train_forecast.py")
    assert isinstance(forecast.timetable, AssetOrTimeSchedule)
    assert [a.uri for a in forecast.timetable.asset_condition.objects] == ["eastwest://models/energy_forecast"]
    assert not isinstance(training.timetable, AssetOrTimeSchedule)  # it reads its champion, but must not loop
    assert [o.uri for o in training.get_task("publish").outlets] == ["eastwest://models/energy_forecast"]


def test_declarations_refuse_what_cannot_work() -> None:
    with pytest.raises(WorkloadError, match="lookback_days needs a time_column"):
        SqlInput("r", sql="source/extract_energy.sql", lookback_days=3)
    with pytest.raises(WorkloadError, match="lookback_days must be a whole number"):
        SqlInput("r", sql="source/extract_energy.sql", time_column="ts", lookback_days=-1)
    with pytest.raises(WorkloadError, match="model"):
        ModelInput("model", model="Not-An-Identifier")
    with pytest.raises(WorkloadError, match="set only model"):
        ModelTarget("energy_forecast", table="other")
    training = Workload(
        job="train_energy_forecast",
        inputs=(
            SqlInput("readings", sql="source/extract_energy.sql", time_column="ts", lookback_days=21),
            ModelInput("champion", model="energy_forecast", required=False),
        ),
        target=ModelTarget("energy_forecast"),
    )
    training.check(Project(ROOT))  # an interval workload without a partition: the registry has none
    assert training.models_read == ["energy_forecast"]
    with pytest.raises(WorkloadError, match="does not declare an input named 'model'"):
        Workload(
            job="train_energy_forecast",
            inputs=(SqlInput("readings", sql="source/extract_energy.sql", time_column="ts"), ModelInput("model", "m")),
            target=Target("t", keys=("day",), partition_column="day"),
        ).check(Project(ROOT))


def test_a_lookback_reads_the_days_before_the_run() -> None:
    forecast = Workload(
        job="energy_forecast",
        inputs=(
            SqlInput("readings", sql="source/extract_machine_power.sql", time_column="ts", lookback_days=7),
            ModelInput("model", model="energy_forecast"),
        ),
        target=Target("energy_forecast", keys=("day", "enterprise_id", "hour"), partition_column="made_on"),
    )
    spec = forecast.check(Project(ROOT))
    tz = "Asia/Shanghai"
    plan = scheduled_plan(
        forecast, spec, get_settings(), dag_id="f", hub="west_gansu",
        data_interval_start=datetime(2026, 8, 1, 17), data_interval_end=datetime(2026, 8, 2, 17),
    )  # fmt: skip
    assert plan.days == [date(2026, 8, 2)]
    assert sources.lookback_start(forecast.inputs[0], plan, tz) == utc_start(date(2026, 7, 26), tz)


def test_a_run_started_by_a_model_covers_the_day_the_model_was_trained_through() -> None:
    workload = Workload(
        job="energy_forecast",
        inputs=(SqlInput("readings", sql="source/extract_machine_power.sql", time_column="ts", lookback_days=7),
                ModelInput("model", model="energy_forecast")),
        target=Target("energy_forecast", keys=("day", "enterprise_id", "hour"), partition_column="made_on"),
    )  # fmt: skip
    spec = workload.check(Project(ROOT))
    common = {"dag_id": "f", "hub": "west_gansu", "data_interval_start": None, "data_interval_end": None}
    after = datetime(2026, 8, 3, 4, 0).astimezone()
    from_event = scheduled_plan(workload, spec, get_settings(), **common, run_after=after, through=date(2026, 8, 2))
    assert (from_event.start_day, from_event.end_day) == ("2026-08-02", "2026-08-03")
    noon = datetime(2026, 8, 3, 12, 0, tzinfo=__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    no_day = scheduled_plan(workload, spec, get_settings(), **common, run_after=noon)
    assert no_day.start_day == str(noon.date() - timedelta(days=1))  # the last complete local day


def test_jobs_share_code_through_private_modules(tmp_path) -> None:
    (tmp_path / "_shared.py").write_text("FACTOR = 3\n")
    (tmp_path / "triple.py").write_text(
        "from . import _shared\nINPUTS = ('x',)\n\ndef transform(x, params):\n    return x * _shared.FACTOR\n"
    )
    assert jobs.job_names(tmp_path) == ["triple"]  # a private module travels but is not a job
    assert jobs.load_module(tmp_path, "triple").transform(2, {}) == 6
    with pytest.raises(jobs.JobError, match="not in the jobs package"):
        jobs.load_module(tmp_path, "_shared")
