"""Publishing replaces exactly one partition, atomically, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest

from eastwest import warehouse


def rows(day: str, machines: int, energy: float = 1.0) -> list[dict]:
    return [
        {
            "day": day,
            "enterprise_id": f"E{m:04d}",
            "machine_id": f"E{m:04d}-M01",
            "readings": 1440,
            "energy_kwh": energy,
            "running_hours": 8.0,
            "utilisation": 0.33,
            "p95_temperature_c": 55.0,
            "anomaly_count": 0,
            "min_power_kw": 0.0,
            "max_temperature_c": 60.0,
            "null_readings": 0,
        }
        for m in range(1, machines + 1)
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    pg_url = request.getfixturevalue("pg_url")
    import sqlalchemy as sa

    from eastwest import sqlfiles

    with sqlfiles.engine(pg_url).begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS daily_kpis"))
    return pg_url


D1, D2, D3 = date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26)


def test_republishing_the_same_rows_changes_nothing(url) -> None:
    first = warehouse.publish(url, "nightly", D1, D2, rows("2026-11-24", 5), "west_guizhou")
    assert first.changed and first.rows_after == 5
    again = warehouse.publish(url, "nightly", D1, D2, rows("2026-11-24", 5), "west_guizhou")
    assert not again.changed
    assert again.rows_before == again.rows_after == 5
    assert "unchanged" in again.describe()
    assert len(warehouse.partition_rows(url, "nightly", D1, D2)) == 5


def test_replacing_a_partition_leaves_other_days_and_scopes_alone(url) -> None:
    warehouse.publish(url, "nightly", D1, D2, rows("2026-11-24", 5), "west_guizhou")
    warehouse.publish(url, "nightly", D2, D3, rows("2026-11-25", 3), "west_guizhou")
    warehouse.publish(url, "analyst-abc", D1, D2, rows("2026-11-24", 2), "west_ningxia")
    outcome = warehouse.publish(url, "nightly", D1, D2, rows("2026-11-24", 4, energy=2.0), "west_ningxia")
    assert outcome.changed and (outcome.rows_before, outcome.rows_after) == (5, 4)
    assert [r["energy_kwh"] for r in warehouse.partition_rows(url, "nightly", D1, D2)] == [2.0] * 4
    assert len(warehouse.partition_rows(url, "nightly", D2, D3)) == 3
    assert len(warehouse.partition_rows(url, "analyst-abc", D1, D2)) == 2


def test_rows_outside_the_partition_are_refused_and_nothing_changes(url) -> None:
    warehouse.publish(url, "nightly", D1, D2, rows("2026-11-24", 5), "west_guizhou")
    with pytest.raises(ValueError, match="outside the partition"):
        warehouse.publish(url, "nightly", D1, D2, rows("2026-11-24", 2) + rows("2026-11-25", 1), "west_guizhou")
    assert len(warehouse.partition_rows(url, "nightly", D1, D2)) == 5


def test_a_failed_insert_rolls_back_the_delete(url) -> None:
    warehouse.publish(url, "nightly", D1, D2, rows("2026-11-24", 5), "west_guizhou")
    duplicate_keys = rows("2026-11-24", 2) + rows("2026-11-24", 2)
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        warehouse.publish(url, "nightly", D1, D2, duplicate_keys, "west_guizhou")
    assert len(warehouse.partition_rows(url, "nightly", D1, D2)) == 5
