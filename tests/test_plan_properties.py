"""Thousands of generated requests against the plan logic: a valid plan or a clean PlanError, nothing else.

``plan_run`` is what the DAG's plan task calls with the run's params (the DAG's params updated with
the run's conf). Whatever a run's conf or the trigger form holds (any JSON, huge numbers, NaN,
dates such as 9999-12-31 or 0001-01-01, unknown keys), it must return a :class:`Plan` that keeps
every promise (days inside the bound, at most 31 of them, a configured hub, parameters the job
accepts) or raise :class:`PlanError`; any other exception fails these tests.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import ROOT, load_dag
from eastwest import SqlInput, Target, Workload
from eastwest.east import plan as plans
from eastwest.east.plan import Plan, PlanError, plan_run
from eastwest.settings import Project, get_settings
from eastwest.west import jobs

#: The analyst workload, with every kind of job parameter in its form (array, number, string).
WORKLOAD = Workload(
    job="daily_kpis",
    inputs=SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
    target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
    form=("enterprise_ids", "z_threshold", "tz"),
)
SPEC = WORKLOAD.check(Project(ROOT))
SETTINGS = get_settings()
FIELDS = (*plans.FORM_KEYS, *WORKLOAD.form)
MANY = settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: 10**400 overflows float
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
days = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat)
day_like = (
    days
    | st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
    | st.sampled_from(["9999-12-31", "0001-01-01", "2000-01-01", "1999-12-31", "", "2026-11-24", "2026-11-24 "])
    | st.dates(min_value=date(1999, 12, 1), max_value=plans.last_day() + timedelta(days=40)).map(date.isoformat)
)
enterprise = st.from_regex(r"\AE[0-9]{4}\Z") | st.text(max_size=8)
enterprise_field = st.lists(enterprise, max_size=8).map(",".join) | st.lists(enterprise, max_size=8) | json_values
field_values = {
    "start_date": day_like | json_values,
    "end_date": day_like | json_values,
    "hub": st.sampled_from([*SETTINGS.hub_choices, "west_tibet", ""]) | json_values,
    "policy": st.sampled_from(["fastest", "cheapest", "slowest", ""]) | json_values,
    "deadline_minutes": st.none() | st.integers(-5, 2000) | json_values,
    "enterprise_ids": enterprise_field,
    "z_threshold": st.floats() | st.integers() | json_values,
    "tz": st.sampled_from(["Asia/Shanghai", "UTC", "../../etc/passwd", "Mars/Olympus"]) | json_values,
}


@st.composite
def confs(draw) -> dict:
    """A run's conf: some of the accepted fields with plausible or hostile values, sometimes unknown keys."""
    conf = {name: draw(field_values[name]) for name in draw(st.sets(st.sampled_from(FIELDS)))}
    if draw(st.integers(0, 9)) == 0:
        conf.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=3)))
    return conf


def assert_valid(plan: Plan, workload: Workload = WORKLOAD) -> None:
    """Every promise a plan makes to the tasks after it."""
    assert isinstance(plan, Plan)
    assert plan.hub in SETTINGS.hub_choices
    assert plan.policy in ("fastest", "cheapest")
    assert plan.deadline_s is None or (plan.policy == "cheapest" and 60 <= plan.deadline_s <= 24 * 3600)
    assert jobs.check_params(SPEC, plan.params) == plan.params  # the hub will accept them
    for key, value in plan.params.items():
        if SPEC.params[key]["type"] == "array":
            assert value == sorted(set(value))
    first, end = date.fromisoformat(plan.start_day or ""), date.fromisoformat(plan.end_day or "")
    assert plans.FIRST_DAY <= first < end <= plans.last_day() + timedelta(days=1)
    assert 1 <= len(plan.days) <= plans.MAX_RANGE_DAYS
    assert plan.start and plan.end and plan.start < plan.end
    assert Plan.from_dict(plan.to_dict()) == plan
    assert re.fullmatch(r"analyst-[0-9a-f]{12}|nightly", plan.scope)


@MANY
@given(conf=confs())
@example(conf={"start_date": "9999-12-31"})
@example(conf={"start_date": "0001-01-01"})
@example(conf={"start_date": "2026-11-24", "end_date": "9999-12-31"})
@example(conf={"start_date": "2026-11-24", "z_threshold": 10**400})
@example(conf={"start_date": 10**5000})
@example(conf={"start_date": "2026-11-24", "tz": "Mars/Olympus"})
def test_any_analyst_conf_gives_a_valid_plan_or_a_plan_error(conf) -> None:
    try:
        plan = plan_run(WORKLOAD, SPEC, SETTINGS, dag_id="east_west_analyst", scheduled=False, conf=conf)
    except PlanError as exc:
        assert str(exc)  # a message naming the field
        return
    assert_valid(plan)
    assert plan.scope.startswith("analyst-")


moments = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59), timezones=st.timezones()
) | st.datetimes(min_value=datetime(1999, 12, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))


@MANY
@given(
    conf=st.dictionaries(
        st.sampled_from(["hub", "policy", "deadline_minutes", "start_date", "x"]), json_values, max_size=2
    )
    | st.fixed_dictionaries({"hub": st.sampled_from(SETTINGS.hub_choices)}),
    start=st.none() | moments | json_scalars,
    length=st.sampled_from([timedelta(days=1), timedelta(days=-1), timedelta(0), timedelta(days=40)]),
)
@example(conf={}, start=datetime(9999, 12, 31, 20, tzinfo=UTC), length=timedelta(hours=3, minutes=59))
@example(conf={}, start=datetime(1, 1, 1, tzinfo=UTC), length=timedelta(days=1))
def test_any_scheduled_run_gives_a_valid_plan_or_a_plan_error(conf, start, length) -> None:
    try:
        end = start + length if isinstance(start, datetime) else start
    except OverflowError:
        end = datetime.max.replace(tzinfo=UTC)
    try:
        plan = plan_run(
            WORKLOAD, SPEC, SETTINGS, dag_id="east_west_nightly", scheduled=True, conf=conf,
            data_interval_start=start, data_interval_end=end,
        )  # fmt: skip
    except PlanError as exc:
        assert str(exc)
        return
    assert_valid(plan)
    assert plan.scope == "nightly" and set(conf) <= set(plans.SCHEDULED_KEYS)


@pytest.fixture(scope="module")
def form():
    return load_dag(ROOT / "dags" / "east_west_analyst.py").params


@settings(max_examples=800, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=day_like | json_values,
    end=st.none() | day_like | json_values,
    hub=st.sampled_from([*SETTINGS.hub_choices, "west_tibet"]) | json_values,
    ids=enterprise_field,
)
def test_what_the_form_accepts_the_plan_accepts_within_its_date_bound(form, start, end, hub, ids) -> None:
    """The form's checks and the plan's agree: a value the form accepts is never refused for its format or bound."""
    from airflow.sdk.exceptions import ParamValidationError

    values = copy.deepcopy(form)
    try:
        values["start_date"], values["end_date"], values["hub"], values["enterprise_ids"] = start, end, hub, ids
        conf = values.validate()
    except ParamValidationError:
        return  # refused before a run exists
    analyst = Workload(job="daily_kpis", inputs=WORKLOAD.inputs, target=WORKLOAD.target, form=("enterprise_ids",))
    try:
        plan = plan_run(analyst, SPEC, SETTINGS, dag_id="east_west_analyst", scheduled=False, conf=conf)
    except PlanError as exc:  # only what a form cannot express: the range across two fields
        assert "must not be before" in str(exc) or "at most 31 days" in str(exc), str(exc)
        return
    assert_valid(plan, analyst)


@settings(max_examples=500, deadline=None, database=None)
@given(
    ids=st.lists(st.from_regex(r"\AE[0-9]{4}\Z"), min_size=1, max_size=6),
    data=st.data(),
)
def test_equivalent_requests_share_one_scope(ids, data) -> None:
    """Duplicates, order and blanks do not change the request: same scope, same rows."""
    shuffled = data.draw(st.permutations(ids + data.draw(st.lists(st.sampled_from(ids), max_size=6))))
    spaced = " , ".join(shuffled) + ("," if data.draw(st.booleans()) else "")
    day = data.draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2026, 12, 31))).isoformat()

    def plan(ids_field, **extra) -> Plan:
        conf = {"start_date": day, "enterprise_ids": ids_field, **extra}
        return plan_run(WORKLOAD, SPEC, SETTINGS, dag_id="east_west_analyst", scheduled=False, conf=conf)

    a, b = plan(",".join(ids)), plan(spaced, end_date=day, hub=SETTINGS.hubs[-1])
    assert (a.scope, a.run_key, a.params, a.days) == (b.scope, b.run_key, b.params, b.days)
    assert a.params["enterprise_ids"] == sorted(set(ids))


def test_a_defaulted_field_is_the_same_request_as_an_empty_one() -> None:
    def scope(**fields) -> str:
        conf = {"start_date": "2026-11-24", **fields}
        return plan_run(WORKLOAD, SPEC, SETTINGS, dag_id="d", scheduled=False, conf=conf).scope

    assert scope() == scope(enterprise_ids="") == scope(enterprise_ids=[]) == scope(enterprise_ids=None)
    assert scope() == scope(z_threshold=3.5) == scope(tz=None) != scope(z_threshold=4.0)
    assert scope(enterprise_ids="E0001") == scope(enterprise_ids="E0001,E0001,E0001") != scope()


def test_any_list_parameter_is_normalised_even_without_unique_items(tmp_path) -> None:
    """A job whose list parameter does not ask for uniqueItems still gets one scope per request."""
    jobs_dir = tmp_path / "include" / "jobs"
    jobs_dir.mkdir(parents=True)
    (tmp_path / "include" / "expectations").mkdir()
    (tmp_path / "include" / "expectations" / "per_machine.json").write_text("{}")
    (tmp_path / "sql" / "source").mkdir(parents=True)
    (tmp_path / "sql" / "source" / "readings.sql").write_text(
        "SELECT * FROM readings WHERE ts >= :start AND ts < :end\n"
    )
    (jobs_dir / "per_machine.py").write_text(
        'INPUTS = ("readings",)\n'
        'PARAMS = {"machines": {"type": "array", "items": {"type": "string", "pattern": "^M[0-9]{2}$"}}}\n'
        "def transform(readings, params):\n    return readings\n"
    )
    workload = Workload(
        job="per_machine",
        inputs=SqlInput("readings", sql="source/readings.sql", time_column="ts"),
        target=Target("per_machine", keys=("day",), partition_column="day"),
        form=("machines",),
    )
    spec = workload.check(Project(tmp_path))
    assert "uniqueItems" not in spec.params["machines"]

    def plan(machines) -> Plan:
        conf = {"start_date": "2026-11-24", "machines": machines}
        return plan_run(workload, spec, SETTINGS, dag_id="d", scheduled=False, conf=conf)

    a, b, c = plan("M02,M01"), plan("M01,M02,M01, M02"), plan(["M02", "M01", "M02"])
    assert a.scope == b.scope == c.scope != plan("M01").scope
    assert a.params["machines"] == b.params["machines"] == c.params["machines"] == ["M01", "M02"]
