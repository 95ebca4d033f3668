"""East data: deterministic generators, Arrow-native extraction from the source DB, landing files."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from eastwest import LandingFiles, SqlInput, Target, Workload
from eastwest.east import arrowdb, sources, steps
from eastwest.east.plan import make_plan
from eastwest.settings import Project, get_settings
from eastwest_dev import orders, telemetry

DAY = date(2026, 11, 24)
READINGS = SqlInput("readings", sql="source/extract_readings.sql", time_column="ts")
ORDERS = LandingFiles("orders", glob="landing/orders/{{ ds }}/*.csv", columns={"units": "int64"})
WORKLOAD = Workload(
    job="energy_per_unit",
    inputs=(READINGS, ORDERS),
    target=Target("energy_per_unit", keys=("day", "enterprise_id", "product"), partition_column="day"),
)
KPIS = Workload(
    job="daily_kpis",
    inputs=READINGS,
    target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
)


def table(day: date, machines: int, **kw) -> pa.Table:
    return pa.Table.from_batches(list(telemetry.generate_day(day, machines, **kw)), schema=telemetry.schema())


def plan_for(workload: Workload, first: date = DAY, days: int = 1, **params):
    spec = workload.check(Project(ROOT))
    return make_plan(
        workload, spec, get_settings(), dag_id="t", scope="nightly", hub="west_guizhou", start_day=first,
        end_day=date.fromordinal(first.toordinal() + days), params=params,
    )  # fmt: skip


def test_generator_is_deterministic_and_shaped() -> None:
    a, b = table(DAY, 45), table(DAY, 45)
    assert a.equals(b)
    assert a.num_rows == 45 * 1440
    assert not a.equals(table(date(2026, 11, 25), 45).set_column(0, "ts", a.column("ts")))
    assert set(a.column("status").to_pylist()) <= {"running", "idle", "fault"}
    assert pa.compute.min(a.column("power_kw")).as_py() >= 0
    assert a.column("power_kw").null_count == 0


def test_machines_spread_over_600_enterprises() -> None:
    ids = telemetry.machine_ids(700)
    assert len({e for e, _ in ids}) == 600
    assert len({m for _, m in ids}) == 700


def test_bad_day_has_nulls_and_impossible_values() -> None:
    bad = table(DAY, 20, bad=True)
    assert bad.column("power_kw").null_count > 0
    assert pa.compute.min(bad.column("power_kw")).as_py() < 0
    assert pa.compute.max(bad.column("temperature_c")).as_py() > 150


@pytest.fixture(params=["sqlite", "postgresql"])
def source(request, tmp_path, monkeypatch):
    """The east_source connection on SQLite or on the real PostgreSQL, holding three days of readings."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.db'}"
        monkeypatch.setenv("AIRFLOW_CONN_EAST_SOURCE", f'{{"conn_type": "sqlite", "host": "{tmp_path / "source.db"}"}}')
    else:
        from eastwest_dev import postgres_connection

        url = request.getfixturevalue("pg_url")
        monkeypatch.setenv("AIRFLOW_CONN_EAST_SOURCE", postgres_connection(url))
    for day in (date(2026, 11, 23), DAY, date(2026, 11, 25)):
        telemetry.load_day(url, day, telemetry.generate_day(day, 3))
    return url


def test_extract_streams_exactly_the_interval_with_the_sources_schema(source, monkeypatch) -> None:
    monkeypatch.setattr(arrowdb, "BATCH_ROWS", 100)
    batches = list(sources.sql_batches(READINGS, plan_for(KPIS), Project(ROOT)))
    assert max(b.num_rows for b in batches) == 100  # streamed batch by batch, never one big read
    assert len(batches) >= 24 * 2  # every hourly slice (3 machines x 60 minutes) in batches of 100
    got = pa.Table.from_batches(batches)
    assert got.num_rows == 3 * 1440
    assert got.schema.field("ts").type == pa.timestamp("us")  # SQLite's text times become timestamps
    assert got.schema.names == telemetry.schema().names
    start, end = telemetry.day_bounds_utc(DAY)
    ts = got.column("ts")
    assert pa.compute.min(ts).as_py() == start and pa.compute.max(ts).as_py() < end
    expected = table(DAY, 3).sort_by([("ts", "ascending"), ("machine_id", "ascending")])
    assert got.cast(expected.schema).equals(expected)


def test_reloading_a_day_replaces_it(source) -> None:
    telemetry.load_day(source, DAY, telemetry.generate_day(DAY, 2))
    assert sum(b.num_rows for b in sources.sql_batches(READINGS, plan_for(KPIS), Project(ROOT))) == 2 * 1440


def test_enterprise_filter_is_bound_not_spliced(source) -> None:
    plan = plan_for(KPIS, enterprise_ids=["E0002"])
    got = pa.Table.from_batches(list(sources.sql_batches(READINGS, plan, Project(ROOT))))
    assert set(got.column("enterprise_id").to_pylist()) == {"E0002"}
    text, values = arrowdb.compile_sql(source, "SELECT 1 WHERE 'x' IN :ids", {"ids": ["E0004' OR '1'='1"]})
    assert "OR" not in text and values == ["E0004' OR '1'='1"]


def test_landing_csv_files_of_the_plans_days_are_read_with_declared_types(data_dir) -> None:
    for day in (DAY, date(2026, 11, 25)):
        orders.write_landing(day, 5, data_dir)
    got = pa.Table.from_batches(list(sources.landing_batches(ORDERS, plan_for(WORKLOAD, days=2), get_settings())))
    expected = pa.concat_tables([orders.generate_orders(d, 5) for d in (DAY, date(2026, 11, 25))])
    assert got.num_rows == expected.num_rows > 0
    assert got.schema.field("units").type == pa.int64()
    assert sorted(got.column("order_id").to_pylist()) == sorted(expected.column("order_id").to_pylist())


def test_landing_parquet_files(data_dir) -> None:
    folder = data_dir / "landing" / "meters" / DAY.isoformat()
    folder.mkdir(parents=True)
    pq.write_table(table(DAY, 2), folder / "part-0.parquet")
    pq.write_table(table(DAY, 1), folder / "part-1.parquet")
    item = LandingFiles("meters", glob="landing/meters/{{ ds }}/*.parquet")
    got = pa.Table.from_batches(list(sources.landing_batches(item, plan_for(WORKLOAD), get_settings())))
    assert got.num_rows == 3 * 1440 and got.schema == telemetry.schema()


def test_no_landing_files_for_the_day_names_the_folder(data_dir) -> None:
    with pytest.raises(sources.InputError, match=r"no landing files match .*landing/orders/2026-11-24/\*\.csv"):
        list(sources.landing_batches(ORDERS, plan_for(WORKLOAD), get_settings()))


def test_a_csv_row_that_does_not_parse_is_rejected_naming_file_and_row(data_dir) -> None:
    import re

    paths = orders.write_landing(DAY, 5, data_dir, bad_row=True)
    with pytest.raises(
        sources.InputError, match=r"E0001\.csv: line \d+: column units value 'twelve' is not int64"
    ) as err:
        list(sources.landing_batches(ORDERS, plan_for(WORKLOAD), get_settings()))
    line = int(re.search(r"line (\d+)", str(err.value)).group(1))
    assert ",twelve," in paths[0].read_text().splitlines()[line - 1]  # the line named is the bad one


def test_schema_changes_are_described() -> None:
    before = sources.schema_json(pa.schema([("a", pa.int64()), ("b", pa.string())]))
    after = sources.schema_json(pa.schema([("a", pa.float64()), ("c", pa.string())]))
    assert sources.schema_changes(before, after) == [
        "new column c (string)",
        "column b (string) is gone",
        "column a changed from int64 to double",
    ]


def test_extract_refuses_an_input_whose_schema_changed_since_the_last_publish(data_dir) -> None:
    from eastwest.east import warehouse
    from eastwest.east.connections import database_url

    orders.write_landing(DAY, 3, data_dir)
    ctx = steps.RunContext.create("t", WORKLOAD, Project(ROOT))
    plan = plan_for(WORKLOAD)
    first = steps.extract_input(ctx, plan, ORDERS)  # nothing recorded yet: accepted
    assert first["rows"] > 0 and '["units", "int64"]' in first["schema"]
    url = database_url("east_warehouse")
    recorded = sources.schema_json(pa.schema([("order_id", pa.string()), ("units", pa.int32())]))
    warehouse.ensure_schema_table(url)
    with arrowdb.connect(url, lock=warehouse.SCHEMAS_TABLE) as conn:
        warehouse.record_schemas(conn, url, "t", {"orders": recorded})
        conn.commit()
    with pytest.raises(steps.InputChanged, match=r"schema of input orders changed.*units changed from int32 to int64"):
        steps.extract_input(ctx, plan, ORDERS)
