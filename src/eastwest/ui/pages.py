"""The report and hubs pages, rendered from Jinja templates (autoescaped) with Vega-Lite charts.

Pure functions of recorded data, so the same page is written next to a run's files by the report
step and served by the Airflow API server (:mod:`eastwest.ui.app`), and both are tested without
Airflow.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from eastwest.ui import charts

STATIC_DIR = Path(__file__).parent / "static"
#: The summary rows the report shows first, in this order (label, summary key).
SUMMARY_ROWS = [
    ("DAG", "dag_id"),
    ("run key", "run_key"),
    ("interval", "interval"),
    ("job", "job"),
    ("job bundle", "job_bundle"),
    ("parameters", "params"),
    ("rows extracted", "rows_extracted"),
    ("raw MB", "raw_mb"),
    ("wire MB", "wire_mb"),
    ("compression ratio", "compression_ratio"),
    ("transfer MB/s (wire)", "transfer_mb_per_s"),
    ("transfer MB/s (logical)", "transfer_logical_mb_per_s"),
    ("transfer seconds", "transfer_seconds"),
    ("chunks skipped (already on the hub)", "chunks_skipped"),
    ("chunks sent again", "chunks_resent"),
    ("hub", "hub"),
    ("job seconds", "job_seconds"),
    ("queued seconds", "queued_seconds"),
    ("core-seconds", "core_seconds"),
    ("cost ¥", "cost_yuan"),
    ("result rows", "result_rows"),
    ("validation", "validation"),
    ("target", "target"),
    ("rows published", "rows_published"),
    ("warehouse", "warehouse"),
]
FAILED_STATES = {"failed", "up_for_retry"}


@cache
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=PackageLoader("eastwest.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
    )
    environment.filters["shown"] = shown
    return environment


def shown(value: Any) -> str:
    """A recorded value as a person reads it: JSON for structures, six significant digits for floats."""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.8f}".rstrip("0")
    return str(value)


def _static(standalone: bool, static: str) -> str:
    return STATIC_DIR.as_uri() if standalone else static


class _Record(dict):
    """A dict whose missing keys read as None in templates (recorded documents vary by version)."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)


def _records(items: list[dict[str, Any]]) -> list[_Record]:
    return [_Record(i) for i in items]


def report_page(
    doc: dict[str, Any] | None,
    *,
    tasks: list[dict[str, Any]],
    run_id: str | None = None,
    run_state: str | None = None,
    dag_id: str | None = None,
    standalone: bool = False,
    static: str = "static",
    ui_root: str = "",
) -> str:
    """A run's report: ``doc`` is what its report step recorded (None if it recorded nothing yet),
    ``tasks`` the task instances Airflow holds for the run (task, state, start, end, seconds)."""
    doc = doc or {}
    summary = _Record(doc.get("summary") or {})
    placement = doc.get("placement") or {}
    validation = _Record(doc.get("validation") or {"outcome": "not recorded", "rows": []})
    validation["rows"] = _records(validation.get("rows") or [])
    preview = _Record(doc.get("preview") or {"kind": "none", "rows": []})
    decisions = [
        _Record({**d, "candidates": _records(d.get("candidates", []))}) for d in placement.get("decisions", [])
    ]
    status = doc.get("status") or ("running" if run_state in (None, "running", "queued") else str(run_state))
    specs = {
        "timeline": charts.timeline(tasks),
        "throughput": charts.throughput(doc.get("transfers") or []),
        "placement": charts.placement(placement["decisions"][-1]) if placement.get("decisions") else None,
        "validation": charts.validation(validation["rows"]),
        "result": charts.result(preview, published=status == "published"),
    }
    return (
        _environment()
        .get_template("report.html")
        .render(
            summary=summary,
            summary_rows=SUMMARY_ROWS,
            status=status,
            run_id=run_id,
            run_state=run_state,
            recorded=bool(doc),
            failed=_records([t for t in tasks if t.get("state") in FAILED_STATES]),
            skipped=[t for t in tasks if t.get("state") == "upstream_failed"],
            task_link=None
            if standalone or not run_id or not dag_id
            else f"{ui_root}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks",
            decisions=decisions,
            failures=_records(placement.get("failures", [])),
            validation=validation,
            preview=preview,
            charts={name: spec for name, spec in specs.items() if spec is not None},
            static=_static(standalone, static),
        )
    )


def hubs_page(
    hubs: list[dict[str, Any]],
    *,
    transfers: list[dict[str, Any]],
    costs: list[dict[str, Any]],
    runs: int,
    ttl: float,
    static: str = "static",
) -> str:
    """The western hubs: each one's health and declared prices, recent transfers and cost per day."""
    specs = {"transfers": charts.hub_transfers(transfers), "cost": charts.cost_per_day(costs)}
    return (
        _environment()
        .get_template("hubs.html")
        .render(
            hubs=_records(hubs),
            runs=runs,
            ttl=ttl,
            charts={name: spec for name, spec in specs.items() if spec is not None},
            static=static,
        )
    )


def not_ours_page(dag_id: str) -> str:
    """What the Report tab says on a run of a DAG that is not an east → west pipeline."""
    return _environment().get_template("not_ours.html").render(dag_id=dag_id, charts={}, static="static")
