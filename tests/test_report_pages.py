"""The report and hubs pages from recorded data, without Airflow: what each shows, and that
recorded values cannot inject markup."""

from __future__ import annotations

import json
from datetime import date

import pyarrow as pa

from eastwest.east.previews import preview
from eastwest.east.report import validation_rows
from eastwest.ui import pages

GX_RESULT = {
    "success": False,
    "results": [
        {
            "success": False,
            "expectation_config": {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "min_power_kw", "min_value": 0, "batch_id": "b"},
            },
            "result": {
                "unexpected_count": 3,
                "unexpected_percent": 37.5,
                "partial_unexpected_list": [-5.0, -1.5, -0.25],
            },
        },
        {
            "success": True,
            "expectation_config": {"type": "expect_column_to_exist", "kwargs": {"column": "energy_kwh"}},
            "result": {},
        },
    ],
}


def test_validation_rows_keep_the_failing_values_and_counts() -> None:
    rows = validation_rows(GX_RESULT)
    assert rows[0] == {
        "expectation": "expect_column_values_to_be_between", "column": "min_power_kw", "arguments": {"min_value": 0},
        "success": False, "unexpected_count": 3, "unexpected_percent": 37.5, "failing_values": [-5.0, -1.5, -0.25],
        "observed": None,
    }  # fmt: skip
    assert rows[1]["success"] and rows[1]["column"] == "energy_kwh"


def test_preview_sums_per_category_or_over_time() -> None:
    kpis = pa.table({
        "day": [date(2026, 11, 24)] * 4, "enterprise_id": ["E1", "E1", "E2", "E2"],
        "machine_id": ["M1", "M2", "M3", "M4"], "readings": [1, 2, 3, 4], "energy_kwh": [1.5, 2.5, 3.0, 0.5],
    })  # fmt: skip
    bars = preview(kpis)
    assert (bars["kind"], bars["x"], bars["y"]) == ("bar", "enterprise_id", "energy_kwh")  # the fewest categories
    assert bars["rows"] == [{"x": "E1", "value": 4.0}, {"x": "E2", "value": 3.5}]
    hours = pa.array([0, 3_600_000_000, 0], pa.timestamp("us", "UTC"))
    forecast = pa.table({"hour": hours, "enterprise_id": ["E1", "E1", "E2"], "energy_kwh": [1.0, 2.0, 4.0]})
    line = preview(forecast)
    assert line["kind"] == "line" and line["series"] == ["energy_kwh"]
    assert [(r["x"][:19], r["value"]) for r in line["rows"]] == [
        ("1970-01-01T00:00:00", 5.0),
        ("1970-01-01T01:00:00", 2.0),
    ]
    assert preview(pa.table({"id": ["a", "b"]}))["kind"] == "none"
    score = pa.table({"day": [date(2026, 11, 24)], "mae": [0.4], "actual_kwh": [120.0], "forecast_kwh": [118.5]})
    totals = preview(score)
    assert (totals["kind"], totals["y"]) == ("bar", "kwh")
    assert totals["rows"] == [{"x": "actual_kwh", "value": 120.0}, {"x": "forecast_kwh", "value": 118.5}]


def _doc(status: str = "quarantined") -> dict:
    return {
        "status": status,
        "summary": {"run_key": "r<script>alert(1)</script>", "hub": "west_gansu", "cost_yuan": 0.002},
        "placement": {"decisions": [{"hub": "west_gansu", "stage": "place", "reason": "fastest", "candidates": [
            {"hub": "west_gansu", "excluded": None, "missing_mb": 1.0, "transfer_s": 0.3, "queue_s": 0.0,
             "compute_s": 1.0, "time_s": 1.3, "core_seconds": 0.5, "cost_yuan": 0.0001}]}],
            "failures": [{"hub": "west_ningxia", "stage": "ship", "at": "2026-12-03T01:00:00", "error": "unreachable"}]},
        "transfers": [{"step": "ship", "hub": "west_gansu", "dataset": "readings", "started_at": 1.7e9,
                       "wire_bytes": 3_000_000, "seconds": 0.5, "samples": [[0, 0], [0.25, 1e6], [0.5, 3e6]]}],
        "validation": {"outcome": "quarantined", "rows": validation_rows(GX_RESULT)},
        "preview": {"kind": "bar", "x": "enterprise_id", "y": "energy_kwh", "rows": [{"x": "E1", "value": 4.0}], "total_rows": 4},
    }  # fmt: skip


def charts_of(page: str) -> dict:
    start = page.index('<script id="chart-specs" type="application/json">') + len(
        '<script id="chart-specs" type="application/json">'
    )
    return json.loads(page[start : page.index("</script>", start)])


def test_report_page_shows_every_part_with_charts_holding_the_data() -> None:
    tasks = [
        {
            "task": "extract",
            "state": "success",
            "start": "2026-12-03T09:00:00+00:00",
            "end": "2026-12-03T09:00:05+00:00",
        },
        {
            "task": "validate",
            "state": "failed",
            "start": "2026-12-03T09:00:06+00:00",
            "end": "2026-12-03T09:00:08+00:00",
        },
    ]
    page = pages.report_page(_doc(), tasks=tasks, run_id="manual__1+00:00", dag_id="d", run_state="failed")
    charts = charts_of(page)
    assert set(charts) == {"timeline", "throughput", "placement", "validation", "result"}
    assert [v["mb_per_s"] for v in charts["throughput"]["data"]["values"]] == [4.0, 8.0]
    assert charts["validation"]["data"]["values"] == [
        {"expectation": "min_power_kw · column_values_to_be_between", "unexpected": 3, "result": "failed"},
        {"expectation": "energy_kwh · column_to_exist", "unexpected": 0, "result": "passed"},
    ]
    assert charts["result"]["data"]["values"] == [{"x": "E1", "value": 4.0}]
    assert "What failed:" in page  # with a link to the failed step's log in the Airflow UI
    assert '<a href="/dags/d/runs/manual__1%2B00%3A00/tasks/validate" target="_top">validate</a> (failed)' in page
    assert page.count('<tr class="FAIL">') == 1 and "-5.0, -1.5, -0.25" in page
    assert "west_ningxia failed during ship" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page  # recorded values are escaped


def test_a_run_whose_expectations_all_held_gets_no_validation_chart() -> None:
    passed = {**_doc("published"), "validation": {"outcome": "passed", "rows": validation_rows(GX_RESULT)[1:]}}
    assert "validation" not in charts_of(pages.report_page(passed, tasks=[]))


def test_report_page_of_a_run_that_recorded_nothing_shows_what_airflow_knows() -> None:
    page = pages.report_page(None, tasks=[{"task": "plan", "state": "failed", "start": "2026-12-03T09:00:00+00:00",
                                           "end": "2026-12-03T09:00:01+00:00"}], run_id="r", run_state="failed")  # fmt: skip
    assert 'id="not-recorded"' in page and "plan (failed)" in page  # no DAG id given: no link
    assert set(charts_of(page)) == {"timeline"}


def test_a_run_of_another_dag_gets_a_note_instead_of_a_report() -> None:
    page = pages.not_ours_page("other<dag>")
    assert 'id="not-ours"' in page and "other&lt;dag&gt;" in page and "vega" not in page


def test_hubs_page_lists_each_hub_with_its_health_and_charts() -> None:
    page = pages.hubs_page(
        [{"name": "west_gansu", "ok": True, "region": "Gansu", "running": 1, "slots": 2},
         {"name": "west_ningxia", "ok": False, "reason": "unreachable"}],
        transfers=[{"hub": "west_gansu", "direction": "ship", "at": "2026-12-03T09:00:00", "mb": 3.0, "mb_per_s": 6.0,
                    "dag_id": "d", "run_id": "r"}],
        costs=[{"day": "2026-12-03", "dag_id": "d", "cost_yuan": 0.5}], runs=1, ttl=15,
    )  # fmt: skip
    assert '<tr data-hub="west_gansu">' in page and "1 / 2" in page
    assert 'class="status down">down</span> unreachable' in page
    assert charts_of(page)["transfers"]["data"]["values"][0]["mb_per_s"] == 6.0
    assert charts_of(page)["cost"]["data"]["values"] == [{"day": "2026-12-03", "dag_id": "d", "cost_yuan": 0.5}]


def test_every_route_of_the_plugin_app_requires_an_airflow_login() -> None:
    """Plugin apps get no authentication from Airflow: each route must declare it itself."""
    import importlib.util

    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.routing import APIRoute

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("eastwest_ui_plugin", ROOT / "plugins" / "eastwest_ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plugin = module.EastWestUiPlugin()
    (mounted,) = plugin.fastapi_apps
    assert mounted["url_prefix"] == "/eastwest"
    views = {v["destination"]: v["href"] for v in plugin.external_views}
    assert views == {"dag_run": "/eastwest/reports/{DAG_ID}/{RUN_ID}", "nav": "/eastwest/hubs"}

    def calls(dependant) -> set:
        found = {dependant.call}
        for sub in dependant.dependencies:
            found |= calls(sub)
        return found

    routes = [r for r in mounted["app"].routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} == {"/reports/{dag_id}/{run_id}", "/hubs", "/static/{name}"}
    for route in routes:
        assert get_user in calls(route.dependant), route.path
    (report,) = [r for r in routes if r.path.startswith("/reports")]
    assert any(getattr(c, "__qualname__", "").startswith("requires_access_dag") for c in calls(report.dependant))
