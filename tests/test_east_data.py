"""East data: a deterministic generator, interval extraction from the source DB, landing files."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eastwest import source, telemetry

DAY = date(2026, 11, 24)


def table(day: date, machines: int, **kw) -> pa.Table:
    return pa.Table.from_batches(list(telemetry.generate_day(day, machines, **kw)), schema=telemetry.schema())


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
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'source.db'}"
    return request.getfixturevalue("pg_url")


def test_extract_returns_exactly_the_interval_in_batches(url, monkeypatch) -> None:
    monkeypatch.setattr(source, "FETCH_ROWS", 1000)
    for day in (date(2026, 11, 23), DAY, date(2026, 11, 25)):
        source.load_day(url, day, telemetry.generate_day(day, 3))
    start, end = telemetry.day_bounds_utc(DAY)
    batches = list(source.extract_batches(url, start, end))
    assert max(b.num_rows for b in batches) == 1000  # streamed, not one big read
    got = pa.Table.from_batches(batches)
    assert got.num_rows == 3 * 1440
    assert got.schema == telemetry.schema()
    ts = got.column("ts")
    assert pa.compute.min(ts).as_py() == start and pa.compute.max(ts).as_py() < end
    expected = table(DAY, 3).sort_by([("ts", "ascending"), ("machine_id", "ascending")])
    assert got.equals(expected)


def test_reloading_a_day_replaces_it(url) -> None:
    source.load_day(url, DAY, telemetry.generate_day(DAY, 3))
    source.load_day(url, DAY, telemetry.generate_day(DAY, 2))
    start, end = telemetry.day_bounds_utc(DAY)
    assert sum(b.num_rows for b in source.extract_batches(url, start, end)) == 2 * 1440


def test_enterprise_filter_is_bound_not_spliced(url) -> None:
    source.load_day(url, DAY, telemetry.generate_day(DAY, 5))
    start, end = telemetry.day_bounds_utc(DAY)
    got = pa.Table.from_batches(list(source.extract_batches(url, start, end, ["E0002", "E0004' OR '1'='1"])))
    assert set(got.column("enterprise_id").to_pylist()) == {"E0002"}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_landing_files(tmp_path, fmt) -> None:
    path = telemetry.write_landing(telemetry.generate_day(DAY, 4), tmp_path, DAY, fmt)
    assert path == tmp_path / "day=2026-11-24" / f"readings.{fmt}"
    if fmt == "parquet":
        assert pq.read_table(path).equals(table(DAY, 4))
    else:
        assert len(path.read_text().splitlines()) == 4 * 1440 + 1
    assert not list(path.parent.glob("*.partial"))
