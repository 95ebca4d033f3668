"""The daily KPI job as a pure LazyFrame function, against small golden frames (no SSH, no Airflow)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
from polars.testing import assert_frame_equal

from jobs import daily_kpis

DEFAULTS = {k: v["default"] for k, v in daily_kpis.PARAMS.items()}

START = datetime(2026, 11, 23, 16, 0)  # 2026-11-24 00:00 in Asia/Shanghai


def readings(rows: list[tuple]) -> pl.LazyFrame:
    return pl.LazyFrame(
        rows,
        schema={
            "ts": pl.Datetime("us"),
            "enterprise_id": pl.String,
            "machine_id": pl.String,
            "power_kw": pl.Float64,
            "temperature_c": pl.Float64,
            "vibration_mm_s": pl.Float64,
            "status": pl.String,
        },
        orient="row",
    )


def minute(i: int) -> datetime:
    return START + timedelta(minutes=i)


def test_energy_hours_utilisation_and_p95() -> None:
    lf = readings(
        [
            (minute(0), "E0001", "E0001-M01", 60.0, 20.0, 1.0, "running"),
            (minute(1), "E0001", "E0001-M01", 60.0, 30.0, 1.0, "running"),
            (minute(2), "E0001", "E0001-M01", 120.0, 40.0, 1.0, "running"),
            (minute(3), "E0001", "E0001-M01", 0.0, 50.0, 1.0, "idle"),
        ]
    )
    got = daily_kpis.transform(lf, params=DEFAULTS).collect()
    expected = pl.DataFrame(
        {
            "day": [date(2026, 11, 24)],
            "enterprise_id": ["E0001"],
            "machine_id": ["E0001-M01"],
            "readings": [4],
            "energy_kwh": [4.0],  # (60 + 60 + 120 + 0) kW × 1 min
            "running_hours": [3 / 60],
            "utilisation": [3 / 1440],
            "p95_temperature_c": [48.5],  # linear interpolation between 40 and 50
            "anomaly_count": [0],
            "min_power_kw": [0.0],
            "max_temperature_c": [50.0],
            "null_readings": [0],
        }
    )
    assert_frame_equal(got, expected, check_dtypes=False)


def test_robust_z_score_flags_only_the_outlier() -> None:
    powers = [10.0, 11.0, 12.0, 10.0, 11.0, 12.0, 100.0]  # median 11, MAD 1: z(100) ≈ 60
    lf = readings([(minute(i), "E0002", "E0002-M01", p, 30.0, 2.0, "running") for i, p in enumerate(powers)])
    got = daily_kpis.transform(lf, params=DEFAULTS).collect()
    assert got["anomaly_count"].to_list() == [1]


def test_constant_signal_has_no_anomalies() -> None:
    lf = readings([(minute(i), "E0002", "E0002-M01", 10.0, 30.0, 2.0, "running") for i in range(10)])
    assert daily_kpis.transform(lf, params=DEFAULTS).collect()["anomaly_count"].to_list() == [0]


def test_days_follow_the_local_timezone() -> None:
    lf = readings(
        [
            (minute(0), "E0001", "E0001-M01", 6.0, 20.0, 1.0, "running"),  # 2026-11-24 00:00 local
            (minute(24 * 60), "E0001", "E0001-M01", 6.0, 20.0, 1.0, "running"),  # 2026-11-25 00:00 local
        ]
    )
    got = daily_kpis.transform(lf, params={**DEFAULTS, "tz": "Asia/Shanghai"}).collect()
    assert got["day"].to_list() == [date(2026, 11, 24), date(2026, 11, 25)]
    in_utc = daily_kpis.transform(lf, params={**DEFAULTS, "tz": "UTC"}).collect()
    assert in_utc["day"].to_list() == [date(2026, 11, 23), date(2026, 11, 24)]


def test_enterprise_filter_and_null_readings() -> None:
    lf = readings(
        [
            (minute(0), "E0001", "E0001-M01", None, 20.0, 1.0, "running"),
            (minute(1), "E0001", "E0001-M01", 6.0, None, 1.0, "running"),
            (minute(0), "E0002", "E0002-M01", 6.0, 20.0, 1.0, "running"),
        ]
    )
    got = daily_kpis.transform(lf, params={**DEFAULTS, "enterprise_ids": ["E0001"]}).collect()
    assert got["enterprise_id"].to_list() == ["E0001"]
    assert got["null_readings"].to_list() == [2]


def test_output_is_sorted_and_one_row_per_machine_day() -> None:
    lf = readings(
        [(minute(i), f"E000{m}", f"E000{m}-M01", 5.0, 20.0, 1.0, "idle") for i in range(3) for m in (3, 1, 2)]
    )
    got = daily_kpis.transform(lf, params=DEFAULTS).collect()
    assert got["machine_id"].to_list() == ["E0001-M01", "E0002-M01", "E0003-M01"]
    assert got["readings"].to_list() == [3, 3, 3]
