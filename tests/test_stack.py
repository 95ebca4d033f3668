"""The real Airflow 3 stack: api-server, scheduler, dag-processor, triggerer (and Celery workers).

Runs are triggered through the REST API and a real browser (headless Debian chromium driven by
Playwright); results are checked in the PostgreSQL warehouse. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import pytest

from conftest import ROOT, SCOPED_USER, TEST_HOME, fresh_pg_database
from eastwest.east import warehouse
from eastwest.east.plan import requested_plan
from eastwest.settings import Project, get_settings
from eastwest_dev import telemetry
from eastwest_dev.stack import Stack, StackError

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "test-artifacts"
CANARY = Path("/tmp/eastwest-canary")
DAY = date(2026, 11, 24)
MACHINES = 8
OPEN_DIALOG = "[role=dialog][data-state=open][aria-modal=true]"


def analyst_conf(hub: str = "west_ningxia", ids: str | None = "E0001,E0002", day: str = "2026-11-24") -> dict:
    return {"start_date": day, "end_date": None, "hub": hub, "enterprise_ids": ids}


def analyst_workload():
    """The analyst DAG's own declaration, read from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("analyst_dag_file", ROOT / "dags" / "east_west_analyst.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kpis


def analyst_rows(url: str, conf: dict) -> list[dict]:
    workload = analyst_workload()
    spec = workload.check(Project(ROOT))
    plan = requested_plan(workload, spec, get_settings(), dag_id="east_west_analyst", conf=conf)
    partition = warehouse.Partition(plan.scope, date.fromisoformat(plan.start_day), date.fromisoformat(plan.end_day))
    return warehouse.partition_rows(url, workload.target, partition)


@pytest.fixture(scope="module")
def east(stack_east, pg_url) -> dict[str, str]:
    for day in (DAY, date(2026, 11, 23)):
        telemetry.load_day(pg_url, day, telemetry.generate_day(day, MACHINES))
    return {**stack_east, "PG_URL": pg_url}


def start(stack: Stack) -> Stack:
    try:
        seconds = stack.up()
    except BaseException:
        stack.down()
        raise
    print(f"stack up in {seconds:.1f}s")
    return stack


def listeners(stack) -> set[str]:
    """host:port of every listening socket of the stack's processes."""
    import psutil

    pids = {p.pid for p in stack.processes()}
    return {
        f"{c.laddr.ip}:{c.laddr.port}"
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    }


def test_the_stack_listens_on_loopback_only(local_stack) -> None:
    bound = listeners(local_stack)
    assert f"127.0.0.1:{local_stack.port}" in bound
    assert all(address.startswith("127.0.0.1:") for address in bound), bound


def test_rest_refuses_bad_params_before_a_run_exists(local_stack) -> None:
    before = local_stack.request("GET", "/api/v2/dags/east_west_analyst/dagRuns")["total_entries"]
    with pytest.raises(StackError, match="400"):
        local_stack.request(
            "POST",
            "/api/v2/dags/east_west_analyst/dagRuns",
            {"logical_date": None, "conf": analyst_conf(ids=f"x; touch {CANARY}")},
        )
    assert local_stack.request("GET", "/api/v2/dags/east_west_analyst/dagRuns")["total_entries"] == before
    assert not CANARY.exists()


def test_a_rest_run_on_postgres_and_local_executor_survives_a_scheduler_restart(local_stack, east) -> None:
    """Triggered through the REST API for two enterprises on one hub; the scheduler is restarted once
    the data has been shipped; the run still succeeds and publishes each of their machines once."""
    conf = analyst_conf(hub="west_guizhou", ids="E0001,E0002", day="2026-11-23")
    run_id = local_stack.trigger("east_west_analyst", conf)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the run is well under way
        tis = local_stack.request("GET", f"/api/v2/dags/east_west_analyst/dagRuns/{run_id}/taskInstances")
        states = {t["task_id"]: t["state"] for t in tis["task_instances"]}
        if states.get("ship") == "success":
            break
        time.sleep(0.5)
    local_stack.restart("scheduler")
    assert local_stack.wait_for_run("east_west_analyst", run_id) == "success"
    rows = analyst_rows(east["PG_URL"], conf)
    machines = sorted(m for e, m in telemetry.machine_ids(MACHINES) if e in ("E0001", "E0002"))
    assert sorted(r["machine_id"] for r in rows) == machines  # each of their machines once: nothing duplicated
    assert {r["hub"] for r in rows} == {"west_guizhou"}


def _browser(playwright):
    return playwright.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )


def _login(page, stack: Stack) -> None:
    page.goto(f"{stack.url}/", wait_until="domcontentloaded")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", stack.password)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
    page.wait_for_load_state("networkidle")


def _open_trigger_form(page, stack: Stack) -> None:
    page.goto(f"{stack.url}/dags/east_west_analyst", wait_until="domcontentloaded")
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Trigger").first.click()
    page.locator(OPEN_DIALOG).wait_for()
    page.locator("#element_enterprise_ids").wait_for()


def _dialog_trigger_button(page):
    return page.locator(OPEN_DIALOG).get_by_role("button", name="Trigger")


def test_the_executors_workers_hold_the_tasks_libraries_before_any_task(local_stack) -> None:
    """airflow.cfg's forkserver preload: each LocalExecutor worker has pyarrow, polars and the SSH
    hook's cryptography loaded, so a task forked from it does not import them again (with Airflow's
    default fork, only the task that uses a library loads it, and the worker never does)."""
    workers = [p for p in local_stack.processes() if "LocalExecutor" in " ".join(p.cmdline())]
    assert workers, [" ".join(p.cmdline()) for p in local_stack.processes()]
    for worker in workers:
        maps = Path(f"/proc/{worker.pid}/maps").read_text()
        for library in ("/pyarrow/libarrow", "polars_runtime", "/cryptography/"):  # their native code
            assert library in maps, (library, worker)


def test_analyst_triggers_from_the_ui_in_a_real_browser(local_stack, east) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    CANARY.unlink(missing_ok=True)
    runs_before = local_stack.request("GET", "/api/v2/dags/east_west_analyst/dagRuns")["total_entries"]
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        _login(page, local_stack)
        _open_trigger_form(page, local_stack)
        page.fill("#element_enterprise_ids", "E0003,E0004")
        page.screenshot(path=str(ARTIFACTS / "trigger-form.png"), full_page=True)
        _dialog_trigger_button(page).click()
        page.locator(OPEN_DIALOG).wait_for(state="detached", timeout=30_000)

        runs = local_stack.request("GET", "/api/v2/dags/east_west_analyst/dagRuns?order_by=-start_date&limit=1")
        assert runs["total_entries"] == runs_before + 1
        run = runs["dag_runs"][0]
        assert run["conf"]["enterprise_ids"] == "E0003,E0004"
        assert local_stack.wait_for_run("east_west_analyst", run["dag_run_id"]) == "success"
        page.goto(f"{local_stack.url}/dags/east_west_analyst/runs/{run['dag_run_id']}", wait_until="domcontentloaded")
        page.wait_for_load_state("networkidle")
        page.get_by_text("success").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "run-success.png"), full_page=True)

        # The run's Report tab: every chart drawn from what the run recorded.
        page.get_by_role("link", name="Report", exact=True).click()
        frame = page.frame_locator("iframe").first
        marks = _rendered_charts(frame, ["timeline", "throughput", "placement", "result"])
        assert all(count > 0 for count in marks.values()), marks
        assert frame.locator("#run-status").inner_text() == "published"
        summary = frame.locator("#summary").inner_text()
        assert "rows published" in summary and "compression ratio" in summary and "cost ¥" in summary
        assert frame.locator("#validation tr.pass").count() > 0 and frame.locator("#validation tr.FAIL").count() == 0
        page.screenshot(path=str(ARTIFACTS / "report-tab.png"), full_page=True)
        _full_report(page, local_stack, run["dag_run_id"], "report.png")

        # A malicious value is refused by the form itself: no run, no canary.
        _open_trigger_form(page, local_stack)
        page.fill("#element_enterprise_ids", f"x; touch {CANARY}")
        page.locator("#element_enterprise_ids").blur()
        page.wait_for_timeout(500)
        button = _dialog_trigger_button(page)
        if button.is_enabled():
            button.click()
            page.wait_for_timeout(2000)
        page.screenshot(path=str(ARTIFACTS / "trigger-form-refused.png"), full_page=True)
        browser.close()
    assert local_stack.request("GET", "/api/v2/dags/east_west_analyst/dagRuns")["total_entries"] == runs_before + 1
    assert not CANARY.exists()
    rows = analyst_rows(east["PG_URL"], analyst_conf(hub="west_guizhou", ids="E0003,E0004"))
    assert sorted({r["enterprise_id"] for r in rows}) == ["E0003", "E0004"]


BAD_DAY = date(2026, 11, 19)


def _get(stack: Stack, path: str, *, user: str | None = None) -> tuple[int, str]:
    """HTTP status and body of a GET on the stack, anonymous or as ``user`` (a bearer token of theirs)."""
    import urllib.error
    import urllib.request

    headers = {}
    if user is not None:
        body = json.dumps({"username": user, "password": stack.password_of(user)}).encode()
        req = urllib.request.Request(f"{stack.url}/auth/token", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as answer:
            headers["Authorization"] = f"Bearer {json.loads(answer.read())['access_token']}"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(f"{stack.url}{path}", headers=headers), timeout=60
        ) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _status(stack: Stack, path: str, *, user: str | None = None) -> int:
    return _get(stack, path, user=user)[0]


def _rendered_charts(frame, names: list[str]) -> dict[str, int]:
    """Wait until each chart is drawn; the number of marks (SVG paths) each holds."""
    counts = {}
    for name in names:
        chart = frame.locator(f"#chart-{name}[data-rendered=true]")
        chart.wait_for(timeout=60_000)
        counts[name] = chart.locator("svg .mark-rect path, svg .mark-line path, svg .mark-symbol path").count()
    return counts


def _full_report(page, stack: Stack, run_id: str, name: str) -> None:
    """The whole report page (the tab's iframe scrolls), as the same logged-in user, for a screenshot."""
    page.goto(f"{stack.url}/eastwest/reports/east_west_analyst/{run_id}", wait_until="domcontentloaded")
    _rendered_charts(page, ["timeline", "result"])
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_quarantined_run_report_the_hubs_page_and_who_may_read_them(local_stack, east) -> None:
    """A run quarantined by validation: its Report tab says what failed and shows the failing
    values; the hubs page shows every hub; the pages answer 401, 403 and 404 where they must.
    (The published run's Report tab is checked in the analyst's UI test.) Screenshots in test-artifacts/."""
    from playwright.sync_api import sync_playwright

    # A DAG that is not an east → west pipeline: its run (left queued, the DAG paused) gets a note.
    other = local_stack.trigger("test_west_job_failure", {}, unpause=False)
    status, note = _get(local_stack, f"/eastwest/reports/test_west_job_failure/{other}", user="admin")
    assert status == 200 and 'id="not-ours"' in note, note
    telemetry.load_day(east["PG_URL"], BAD_DAY, telemetry.generate_day(BAD_DAY, MACHINES, bad=True))
    bad = local_stack.trigger("east_west_analyst", analyst_conf(hub="auto", ids=None, day=BAD_DAY.isoformat()))
    status, early = _get(local_stack, f"/eastwest/reports/east_west_analyst/{bad}", user="admin")
    assert status == 200 and 'id="not-recorded"' in early  # before its report step: what Airflow knows
    assert local_stack.wait_for_run("east_west_analyst", bad) == "failed"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        _login(page, local_stack)
        page.goto(f"{local_stack.url}/dags/east_west_analyst/runs/{bad}", wait_until="domcontentloaded")
        page.get_by_role("link", name="Report", exact=True).click()
        frame = page.frame_locator("iframe").first
        _rendered_charts(frame, ["timeline", "validation", "result"])
        assert frame.locator("#run-status").inner_text() == "quarantined"
        assert "validate (failed)" in frame.locator("#failed-steps").inner_text()
        failed = frame.locator("#validation tr.FAIL").all_inner_texts()
        assert any("min_power_kw" in row for row in failed) and any("null_readings" in row for row in failed), failed
        page.screenshot(path=str(ARTIFACTS / "report-tab-quarantined.png"), full_page=True)
        _full_report(page, local_stack, bad, "report-quarantined.png")

        page.goto(f"{local_stack.url}/plugin/eastwest-hubs", wait_until="domcontentloaded")
        frame = page.frame_locator("iframe").first
        _rendered_charts(frame, ["transfers", "cost"])
        for hub in get_settings().hubs:
            assert frame.locator(f"#hubs tr[data-hub={hub}] .status.ok").count() == 1, hub
        assert frame.locator("#hubs tr[data-hub]").count() == 4
        assert frame.locator("#hubs .status.ok").count() == 4
        page.screenshot(path=str(ARTIFACTS / "hubs-page.png"), full_page=True)
        browser.close()

    report = f"/eastwest/reports/east_west_analyst/{bad}"
    assert _status(local_stack, report, user="admin") == 200
    assert _status(local_stack, report) == 401  # anonymous
    assert _status(local_stack, "/eastwest/hubs") == 401
    assert _status(local_stack, "/eastwest/static/vega.min.js") == 401
    for traversal in (
        "/eastwest/reports/east_west_analyst/..%2F..%2F..%2Fetc%2Fpasswd",
        "/eastwest/reports/east_west_analyst/..",
        "/eastwest/reports/..%2F..%2Fetc/passwd",
        "/eastwest/static/..%2Fapp.py",
        "/eastwest/static/LICENSES.md",
    ):
        assert _status(local_stack, traversal, user="admin") == 404, traversal
    # SCOPED_USER may read the analyst DAG's runs only (the test stack's DagScopedAuthManager).
    assert _status(local_stack, report, user=SCOPED_USER) == 200
    assert (
        _status(
            local_stack, "/eastwest/reports/east_west_nightly/scheduled__2026-11-24T16:30:00+00:00", user=SCOPED_USER
        )
        == 403
    )
    assert _status(local_stack, "/eastwest/reports/east_west_nightly/no-such-run", user="admin") == 404


@pytest.fixture(scope="module")
def celery_stack(east, local_stack):
    local_stack.down()  # two stacks do not fit two cores comfortably
    with fresh_pg_database("eastwest_airflow_celery") as db:
        stack = start(
            Stack(
                state_dir=TEST_HOME / "stack-celery",
                port=28081,
                executor="celery",
                db_url=db,
                workers=1,
                broker_url="redis://127.0.0.1:6379/5",
                extra_env={k: v for k, v in east.items() if k != "PG_URL"},
            )
        )
        try:
            yield stack
        finally:
            stack.down()
            assert not stack.processes(), "a process of the stack outlived `down`"


def test_rest_trigger_with_celery_executor_on_redis(celery_stack, east) -> None:
    assert any(name.startswith("celery-worker") for name in celery_stack.running())
    assert all(address.startswith("127.0.0.1:") for address in listeners(celery_stack)), listeners(celery_stack)
    conf = analyst_conf(hub="west_guizhou", ids="E0005")
    run_id = celery_stack.trigger("east_west_analyst", conf)
    assert celery_stack.wait_for_run("east_west_analyst", run_id) == "success"
    assert {r["enterprise_id"] for r in analyst_rows(east["PG_URL"], conf)} == {"E0005"}
    log = (TEST_HOME / "stack-celery" / "celery-worker-0.log").read_text()
    assert "east_west_analyst" in log  # the worker, not the scheduler, ran the tasks
