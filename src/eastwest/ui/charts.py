"""The report's and the hubs page's charts, as Vega-Lite specs built with Altair.

Each function takes plain records (what a run recorded, or what the hubs answered) and returns a
spec as a dict, or None when there is nothing to draw. The browser renders them with vega-embed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

WIDTH = 640


def _finish(chart: Any) -> dict[str, Any]:
    return chart.properties(width=WIDTH).configure_view(stroke=None).to_dict()


def timeline(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run's steps on a time axis, one bar per task try, coloured by state."""
    import altair as alt

    rows = [t for t in tasks if t.get("start")]
    if not rows:
        return None
    data = alt.Data(values=[{**t, "end": t.get("end") or datetime.now(UTC).isoformat()} for t in rows])
    order = [t["task"] for t in sorted(rows, key=lambda t: t["start"])]
    chart = (
        alt.Chart(data, title="Steps")
        .mark_bar(cornerRadius=2)
        .encode(
            x=alt.X("start:T", title="time (UTC)", scale=alt.Scale(type="utc"), axis=alt.Axis(format="%H:%M:%S")),
            x2="end:T",
            y=alt.Y("task:N", sort=order, title=None),
            color=alt.Color("state:N", scale=alt.Scale(domain=list(STATE_COLOURS), range=list(STATE_COLOURS.values()))),
            tooltip=["task:N", "state:N", "seconds:Q", "try_number:Q"],
        )
    )
    return _finish(chart)


STATE_COLOURS = {
    "success": "#2e7d32",
    "failed": "#c62828",
    "upstream_failed": "#ef6c00",
    "skipped": "#9e9e9e",
    "running": "#1565c0",
    "up_for_retry": "#f9a825",
    "deferred": "#6a1b9a",
    "queued": "#90a4ae",
}


def throughput(transfers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """MB/s on the wire over each transfer's seconds, one line per transfer (ship and fetch)."""
    import altair as alt

    values = []
    for t in transfers:
        samples = t.get("samples") or []
        label = f"{t.get('step')} {t.get('dataset')} ({t.get('hub')})"
        for (t0, b0), (t1, b1) in zip(samples, samples[1:], strict=False):
            if t1 > t0:
                values.append({"transfer": label, "seconds": t1, "mb_per_s": round((b1 - b0) / 1e6 / (t1 - t0), 3)})
    if not values:
        return None
    chart = (
        alt.Chart(alt.Data(values=values), title="Transfer throughput")
        .mark_line(point=True, interpolate="step-before")
        .encode(
            x=alt.X("seconds:Q", title="seconds since the transfer started"),
            y=alt.Y("mb_per_s:Q", title="MB/s on the wire"),
            color=alt.Color("transfer:N", title=None),
            tooltip=["transfer:N", "seconds:Q", "mb_per_s:Q"],
        )
    )
    return _finish(chart)


def placement(decision: dict[str, Any]) -> dict[str, Any] | None:
    """One placement decision: each usable hub's estimated seconds, split into send, queue and
    compute; the chosen hub is named in the title."""
    import altair as alt

    values = [
        {"hub": c["hub"], "part": part, "seconds": c[key]}
        for c in decision.get("candidates", [])
        if c.get("excluded") is None
        for part, key in (("send", "transfer_s"), ("queue", "queue_s"), ("compute", "compute_s"))
    ]
    if not values:
        return None
    chart = (
        alt.Chart(
            alt.Data(values=values),
            title=f"Estimated seconds per hub ({decision.get('stage')}: chose {decision.get('hub')})",
        )
        .mark_bar()
        .encode(
            x=alt.X("sum(seconds):Q", title="estimated seconds"),
            y=alt.Y("hub:N", title=None),
            color=alt.Color("part:N", sort=["send", "queue", "compute"], title=None),
            order=alt.Order("part:N"),
            tooltip=["hub:N", "part:N", "seconds:Q"],
        )
    )
    return _finish(chart)


def validation(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Values that broke each expectation (0 for those that held), red where it failed; None when
    every expectation held (the table says so)."""
    import altair as alt

    if all(r["success"] for r in rows):
        return None

    values = [
        {
            "expectation": " · ".join(filter(None, [r.get("column"), str(r["expectation"]).removeprefix("expect_")])),
            "unexpected": r.get("unexpected_count") or 0,
            "result": "passed" if r["success"] else "failed",
        }
        for r in rows
    ]
    if not values:
        return None
    chart = (
        alt.Chart(alt.Data(values=values), title="Unexpected values per expectation")
        .mark_bar()
        .encode(
            x=alt.X("unexpected:Q", title="values that broke it"),
            y=alt.Y("expectation:N", title=None, sort="-x", axis=alt.Axis(labelLimit=360)),
            color=alt.Color("result:N", scale=alt.Scale(domain=["passed", "failed"], range=["#2e7d32", "#c62828"])),
            tooltip=["expectation:N", "result:N", "unexpected:Q"],
        )
    )
    return _finish(chart)


def result(preview: dict[str, Any], *, published: bool) -> dict[str, Any] | None:
    """What the result holds (``report.preview``'s data): a line over time or bars per category."""
    import altair as alt

    rows = preview.get("rows") or []
    if not rows:
        return None
    what = "published" if published else "not published"
    data = alt.Data(values=rows)
    if preview["kind"] == "line":
        chart = (
            alt.Chart(data, title=f"Result ({what}): sum per {preview['x']}")
            .mark_line(point=True)
            .encode(
                x=alt.X("x:T", title=preview["x"]),
                y=alt.Y("value:Q", title="sum"),
                color=alt.Color("series:N", title=None),
                tooltip=["x:T", "series:N", "value:Q"],
            )
        )
    else:
        per = f"totals in {preview['y']}" if preview["x"] == "column" else f"{preview['y']} per {preview['x']}"
        chart = (
            alt.Chart(data, title=f"Result ({what}): {per}")
            .mark_bar()
            .encode(
                x=alt.X("value:Q", title=f"sum of {preview['y']}"),
                y=alt.Y("x:N", title=preview["x"], sort="-x"),
                tooltip=["x:N", "value:Q"],
            )
        )
    return _finish(chart)


def hub_transfers(transfers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Recent transfers' MB/s on the wire, by when they ran, one colour per hub."""
    import altair as alt

    if not transfers:
        return None
    chart = (
        alt.Chart(alt.Data(values=transfers), title="Recent transfers")
        .mark_circle(size=70)
        .encode(
            x=alt.X("at:T", title="started (UTC)"),
            y=alt.Y("mb_per_s:Q", title="MB/s on the wire"),
            color=alt.Color("hub:N"),
            shape=alt.Shape("direction:N"),
            tooltip=["hub:N", "direction:N", "dag_id:N", "run_id:N", "mb:Q", "mb_per_s:Q"],
        )
    )
    return _finish(chart)


def cost_per_day(costs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """¥ per day, stacked by workload (DAG)."""
    import altair as alt

    if not costs:
        return None
    chart = (
        alt.Chart(alt.Data(values=costs), title="Compute cost per workload per day")
        .mark_bar()
        .encode(
            x=alt.X("day:O", title="day"),
            y=alt.Y("sum(cost_yuan):Q", title="¥"),
            color=alt.Color("dag_id:N", title="workload"),
            tooltip=["day:O", "dag_id:N", "sum(cost_yuan):Q", "count():Q"],
        )
    )
    return _finish(chart)
