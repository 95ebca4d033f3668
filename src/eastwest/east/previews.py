"""What a run's result holds, as the data of one chart for its report (computed where the result
is in hand: the validate step, whether the result passes or is quarantined)."""

from __future__ import annotations

from typing import Any

#: A preview keeps at most this many rows per chart.
PREVIEW_ROWS = 30


def preview(table: Any) -> dict[str, Any]:
    """What the run's result holds, as the data of one chart: the first float column summed over
    its time column (one line per float column, up to three) when the result spans several times,
    else the first float column summed per category (the text column with the fewest values, top
    ``PREVIEW_ROWS``), else the totals of the float columns that share the commonest unit suffix
    (``actual_kwh`` and ``forecast_kwh``)."""
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    schema = frame.schema
    floats = [c for c, t in schema.items() if t.is_float()]
    if not floats or frame.height == 0:
        return {"kind": "none", "rows": [], "total_rows": frame.height, "reason": "no numeric values to chart"}
    times = [c for c, t in schema.items() if t.is_temporal() and frame[c].n_unique() > 1]
    if times:
        x, ys = times[0], floats[:3]
        grouped = frame.group_by(x).agg([pl.col(c).sum() for c in ys]).sort(x).tail(PREVIEW_ROWS * 10)
        rows = [
            {"x": _iso(record[x]), "series": column, "value": record[column]}
            for record in grouped.iter_rows(named=True)
            for column in ys
        ]
        return {"kind": "line", "x": x, "y": "sum", "series": ys, "rows": rows, "total_rows": frame.height}
    texts = sorted(
        (c for c, t in schema.items() if t in (pl.String, pl.Categorical) and frame[c].n_unique() > 1),
        key=lambda c: frame[c].n_unique(),
    )
    if not texts:  # one total per float column of the commonest unit (e.g. actual_kwh against forecast_kwh)
        units: dict[str, list[str]] = {}
        for column in floats:
            units.setdefault(column.rsplit("_", 1)[-1], []).append(column)
        unit, columns = max(units.items(), key=lambda item: len(item[1]))
        rows = [{"x": column, "value": frame[column].sum()} for column in columns]
        return {"kind": "bar", "x": "column", "y": unit, "rows": rows, "total_rows": frame.height}
    y = floats[0]
    x = texts[0]
    grouped = frame.group_by(x).agg(pl.col(y).sum()).sort(y, descending=True).head(PREVIEW_ROWS)
    rows = [{"x": str(record[x]), "value": record[y]} for record in grouped.iter_rows(named=True)]
    return {"kind": "bar", "x": x, "y": y, "rows": rows, "total_rows": frame.height}


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
