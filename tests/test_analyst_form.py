"""The analyst DAG's trigger form: each field is typed and checked before a run can exist."""

from __future__ import annotations

import copy

import pytest

from conftest import ROOT, load_dag

CANARY = "/tmp/eastwest-canary"


@pytest.fixture(scope="module")
def params():
    return load_dag(ROOT / "dags" / "east_west_analyst.py").params


def resolved(params, **changes):
    form = copy.deepcopy(params)
    for key, value in changes.items():
        form[key] = value  # ParamsDict validates on assignment, as the UI form and the REST API do
    return form.validate()


def test_the_form_has_the_dates_the_hub_and_the_jobs_declared_parameters(params) -> None:
    assert set(params) == {"start_date", "end_date", "hub", "policy", "deadline_minutes", "enterprise_ids"}
    values = resolved(params)
    assert values["hub"] == "auto" and values["policy"] == "fastest" and values["deadline_minutes"] is None
    assert params.get_param("hub").schema["enum"] == [
        "auto", "west_guizhou", "west_neimenggu", "west_gansu", "west_ningxia"
    ]  # fmt: skip


def test_valid_request(params) -> None:
    values = resolved(
        params, start_date="2026-11-20", end_date="2026-11-24", hub="west_ningxia", enterprise_ids="E0001,E0042"
    )
    assert values["enterprise_ids"] == "E0001,E0042"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("enterprise_ids", f"x; touch {CANARY}"),
        ("enterprise_ids", "E0001,$(id)"),
        ("enterprise_ids", "E0001 E0002"),
        ("hub", "west_tibet"),
        ("hub", "west_guizhou; rm -rf /"),
        ("policy", "slowest"),
        ("deadline_minutes", 0),
        ("deadline_minutes", "30; id"),
        ("start_date", "2026-11-24; touch /tmp/x"),
        ("start_date", "yesterday"),
        ("end_date", "24/11/2026"),
    ],
)
def test_bad_values_are_refused(params, field, value) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        resolved(params, **{field: value})
