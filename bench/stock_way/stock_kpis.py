"""daily_kpis in pandas, as a user of the stock way would write it: CSV in, CSV out.

    python stock_kpis.py readings.csv daily_kpis.csv [tz] [z_threshold]

The same KPIs as ``include/jobs/daily_kpis.py`` (the e2e benchmark checks the two results equal).
"""

import sys

import numpy as np
import pandas as pd

KEYS = ["day", "enterprise_id", "machine_id"]


def robust_z(frame: pd.DataFrame, column: str) -> pd.Series:
    by = [frame[k] for k in KEYS]
    x = frame[column]
    median = x.groupby(by).transform("median")
    mad = (x - median).abs().groupby(by).transform("median")
    return pd.Series(np.where(mad > 0, 0.6745 * (x - median) / mad, 0.0), index=frame.index)


def main(src: str, dst: str, tz: str = "Asia/Shanghai", threshold: float = 3.5) -> None:
    df = pd.read_csv(src, parse_dates=["ts"])
    df["day"] = df["ts"].dt.tz_localize("UTC").dt.tz_convert(tz).dt.normalize()
    df["anomaly"] = (robust_z(df, "power_kw").abs() > threshold) | (robust_z(df, "vibration_mm_s").abs() > threshold)
    df["running"] = df["status"] == "running"
    df["incomplete"] = df[["power_kw", "temperature_c", "vibration_mm_s", "status"]].isna().any(axis=1)
    groups = df.groupby(KEYS, sort=True)
    out = groups.agg(
        readings=("ts", "size"),
        energy_kwh=("power_kw", "sum"),
        running=("running", "sum"),
        anomaly_count=("anomaly", "sum"),
        min_power_kw=("power_kw", "min"),
        max_temperature_c=("temperature_c", "max"),
        null_readings=("incomplete", "sum"),
    )
    out["p95_temperature_c"] = groups["temperature_c"].quantile(0.95)
    out["energy_kwh"] = out["energy_kwh"] / 60.0
    out["running_hours"] = out["running"] / 60.0
    out["utilisation"] = out["running"] / (24 * 60)
    out = out.drop(columns="running").reset_index()
    out["day"] = out["day"].dt.strftime("%Y-%m-%d")
    out.to_csv(dst, index=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *sys.argv[3:4], *(float(a) for a in sys.argv[4:5]))
