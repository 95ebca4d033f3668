"""The Airflow glue: the DAG builder (:func:`east_west_dag`) and the operators it uses."""

from __future__ import annotations

from typing import Any

__all__ = ["east_west_dag"]


def __getattr__(name: str) -> Any:
    if name == "east_west_dag":
        from eastwest.airflow.dag import east_west_dag

        return east_west_dag
    raise AttributeError(name)
