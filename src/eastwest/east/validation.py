"""Validate a result with a Great Expectations suite kept as a JSON file in a project's ``include/expectations``."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ValidationOutcome:
    success: bool
    evaluated: int
    failed: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.success:
            return f"passed: {self.evaluated} of {self.evaluated} expectations met"
        return f"failed {len(self.failed)} of {self.evaluated} expectations: " + "; ".join(self.failed)


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no network calls from tasks
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def validate(frame: Any, suite_file: Path) -> ValidationOutcome:
    """Run the suite in ``suite_file`` against a pandas DataFrame; never raises on failed expectations."""
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    spec = json.loads(suite_file.read_text())
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    suite = ExpectationSuite(name=spec["name"])
    for expectation in spec["expectations"]:
        suite.add_expectation_configuration(
            ExpectationConfiguration(
                type=expectation["type"], kwargs=expectation["kwargs"], meta=expectation.get("meta", {})
            )
        )
    suite = context.suites.add(suite)
    batch = (
        context.data_sources.add_pandas("east")
        .add_dataframe_asset("result")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result = batch.validate(suite)
    failed = []
    for item in result.results:
        if not item.success:
            config = item.expectation_config
            if config is None:
                failed.append("an expectation without configuration")
                continue
            column = config.kwargs.get("column", "")
            unexpected = (item.result or {}).get("unexpected_count")
            detail = f" ({unexpected} unexpected values)" if unexpected else ""
            failed.append(f"{config.type}({column}){detail}")
    return ValidationOutcome(
        success=bool(result.success),
        evaluated=len(result.results),
        failed=failed,
        result=result.to_json_dict(),
    )
