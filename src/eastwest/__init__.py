"""East-Data-West-Compute pipelines on Apache Airflow.

The package has four rooms:

``eastwest.east``
    the east side: sources (SQL and landing files), the warehouse, validation, a run's plan,
    steps and report.
``eastwest.hub``
    the hub client: the SSH hook and the transfer engine.
``eastwest.west``
    the west side, deployed to every hub as a content-addressed bundle: the runner, the wire
    format, the hub protocol and the job contract (standard library, pyarrow and polars only).
``eastwest.airflow``
    the Airflow glue: the DAG builder and the operators.

A DAG file needs only the declarations (:mod:`eastwest.config`) and :func:`east_west_dag`.
This module imports nothing at start-up (a hub imports it without Airflow).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LandingFiles",
    "ModelInput",
    "ModelTarget",
    "SqlInput",
    "Target",
    "Workload",
    "WorkloadError",
    "east_west_dag",
]
_DECLARATIONS = tuple(name for name in __all__ if name != "east_west_dag")  # from eastwest.config


def __getattr__(name: str) -> Any:
    if name in _DECLARATIONS:
        from eastwest import config

        return getattr(config, name)
    if name == "east_west_dag":
        from eastwest.airflow.dag import east_west_dag

        return east_west_dag
    raise AttributeError(f"module 'eastwest' has no attribute {name!r}")
