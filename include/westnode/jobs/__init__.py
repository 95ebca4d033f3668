"""The registry of jobs a western node will run. The runner refuses every other name.

To add a job: write a module here with ``INPUTS`` (dataset names it reads), ``PARAMS`` (allowed
parameter names with their types) and a pure ``transform(**frames, params) -> LazyFrame``, then
add it to ``REGISTRY``. Modules are imported only when their job runs.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTRY: dict[str, str] = {
    "daily_kpis": "westnode.jobs.daily_kpis",
}


class UnknownJobError(Exception):
    """A job name that is not registered on this node."""


def load_job(name: str) -> ModuleType:
    """Import a registered job's module, refusing any name not in :data:`REGISTRY`."""
    try:
        module_name = REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownJobError(
            f"job {name!r} is not registered on this node; registered jobs: {', '.join(sorted(REGISTRY))}"
        ) from None
    return importlib.import_module(module_name)
