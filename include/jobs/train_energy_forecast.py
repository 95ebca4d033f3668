"""Train the next-day hourly energy forecast per enterprise, backtest it, and export it as ONNX.

From minute power readings (``ts``, ``enterprise_id``, ``power_kw``) over N local days: hourly
energy per enterprise and its features (``_energy.FEATURES``), then scikit-learn's
``HistGradientBoostingRegressor`` trained on every day but the last ``holdout_days`` and scored on
those (time-ordered; a held-out day's features use only the days before it, as a real forecast
would). The baseline is seasonal-naive (the same hour one week earlier); the current champion,
when there is one, is scored on the same held-out days. The model goes out as ONNX (no pickle),
named by the SHA-256 of its bytes: the same data, code and parameters give the same version.

One row comes back: the model, its metrics, the training and held-out intervals, and what the data
lacked (missing enterprise-hours, enterprises with no data to learn from).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from . import _energy

INPUTS = ("readings", "champion")

PARAMS = {
    "model_name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$", "default": "energy_forecast"},
    "tz": {"type": "string", "format": "timezone", "default": "Asia/Shanghai", "title": "Time zone of the days"},
    "holdout_days": {"type": "integer", "minimum": 1, "maximum": 14, "default": 7, "title": "Days held out"},
    "max_iter": {"type": "integer", "minimum": 1, "maximum": 2000, "default": 300, "title": "Boosting rounds"},
}

ALGORITHM = "sklearn.HistGradientBoostingRegressor"


class TrainingError(ValueError):
    """The readings cannot give an honest backtest."""


def fit(x, y, max_iter: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    # Absolute error: the loss the backtest reports (MAE), and robust to the days a machine stays
    # down, which nothing can foresee. Small trees and leaves of ≥ 20 rows: a park has few enterprises.
    model = HistGradientBoostingRegressor(
        loss="absolute_error", max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20,
        l2_regularization=1.0, early_stopping=False, random_state=0,
    )  # fmt: skip
    return model.fit(x, y)


def _onnx(model, n_features: int, name: str) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(model, initial_types=[("features", FloatTensorType([None, n_features]))], target_opset=18)
    onx.graph.name = name  # skl2onnx names the graph with a random UUID; the version must depend on the model only
    for key, value in (("eastwest.model", name), ("eastwest.features", ",".join(_energy.FEATURES))):
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value
    return onx.SerializeToString()


def _champion_scores(
    champion: pl.DataFrame, holdout: pl.DataFrame, name: str
) -> tuple[str | None, float | None, float | None]:
    """The champion's MAE and MAPE on the same held-out rows (None when there is none)."""
    if champion.height == 0:
        return None, None, None
    [row] = champion.to_dicts()
    _energy.check_model(name, row["version"], row["onnx"])
    try:
        model = _energy.session(row["onnx"])
    except _energy.ModelError:  # built for other features: it cannot be scored here, the gate says so
        return row["version"], None, None
    mae, mape = _energy.errors(holdout["energy_kwh"], _energy.predict(model, holdout))
    return row["version"], mae, mape


@dataclass(frozen=True)
class Split:
    """The time-ordered split of a backtest (the benchmark uses it too, to compare learners)."""

    first: date  # the readings' first local day (history only)
    last: date
    holdout_start: date  # the last ``holdout_days`` are held out
    train: pl.DataFrame  # measured enterprise-hours from the day history is complete up to the held-out days
    holdout: pl.DataFrame
    missing_hours: int  # enterprise-hours after the history days without any reading


def split(hours: pl.DataFrame, holdout_days: int) -> Split:
    """Features of every enterprise-hour in ``hours`` (see ``_energy.hourly``), split by time."""
    if hours.height == 0:
        raise TrainingError("no readings: nothing to train on")
    first, last = hours["day"].min(), hours["day"].max()
    holdout_start = last - timedelta(days=holdout_days - 1)
    train_first = first + timedelta(days=_energy.HISTORY_DAYS)
    if train_first >= holdout_start:
        raise TrainingError(
            f"readings cover {first} .. {last}: {(last - first).days + 1} days; training needs "
            f"{_energy.HISTORY_DAYS} days of history, at least one day to learn from and {holdout_days} held out"
        )
    table = _energy.features(_energy.grid(hours, first, last))
    usable = table.filter(pl.col("day") >= train_first)
    missing_hours = int(usable["energy_kwh"].null_count())
    usable = usable.filter(pl.col("energy_kwh").is_not_null() & (pl.col("scale") > 0))
    train = usable.filter(pl.col("day") < holdout_start)
    holdout = usable.filter(pl.col("day") >= holdout_start)
    if train.height == 0 or holdout.height == 0:
        raise TrainingError(f"no measured hours to {'learn from' if train.height == 0 else 'hold out'}")
    return Split(first, last, holdout_start, train, holdout, missing_hours)


def transform(readings: pl.LazyFrame, champion: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    name, tz = params["model_name"], params["tz"]
    hours = _energy.hourly(readings.select("ts", "enterprise_id", "power_kw"), tz)
    cut = split(hours, int(params["holdout_days"]))
    train, holdout, holdout_start = cut.train, cut.holdout, cut.holdout_start
    everyone = set(hours["enterprise_id"].unique().to_list())
    dropped = sorted(everyone - set(train["enterprise_id"].unique().to_list()))

    model = fit(_energy.matrix(train), _energy.target(train), int(params["max_iter"]))
    onnx = _onnx(model, len(_energy.FEATURES), name)
    mae, mape = _energy.errors(holdout["energy_kwh"], _energy.predict(_energy.session(onnx), holdout))
    baseline_mae, baseline_mape = _energy.errors(holdout["energy_kwh"], _energy.seasonal_naive(holdout))
    champion_version, champion_mae, champion_mape = _champion_scores(champion.collect(), holdout, name)
    return pl.DataFrame(
        [
            {
                "name": name, "version": hashlib.sha256(onnx).hexdigest(), "onnx": onnx, "algorithm": ALGORITHM,
                "features": ",".join(_energy.FEATURES), "train_start": cut.first,
                "train_end": holdout_start - timedelta(days=1), "holdout_start": holdout_start, "holdout_end": cut.last,
                "train_rows": train.height, "holdout_rows": holdout.height, "enterprises": len(everyone),
                "missing_hours": cut.missing_hours, "dropped_enterprises": len(dropped), "dropped": ",".join(dropped[:50]),
                "mae": mae, "mape": mape, "baseline_mae": baseline_mae, "baseline_mape": baseline_mape,
                "champion_version": champion_version, "champion_mae": champion_mae, "champion_mape": champion_mape,
            }
        ],
        schema_overrides={"champion_version": pl.String, "champion_mae": pl.Float64, "champion_mape": pl.Float64},
    ).lazy()  # fmt: skip
