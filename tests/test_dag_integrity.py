"""Every DAG file imports cleanly and fast, without heavy libraries, and is configured for retries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
HEAVY = ("polars", "pyarrow", "pandas", "great_expectations", "numpy")

PROBE = r"""
import importlib.util, json, sys, time
import airflow.sdk  # the scheduler has Airflow loaded already; time only the DAG file itself
before = set(sys.modules)
path = sys.argv[1]
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("dagfile", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
seconds = time.perf_counter() - started
dag = module.dag
print(json.dumps({
    "seconds": seconds,
    "new_modules": sorted(set(sys.modules) - before),
    "dag_id": dag.dag_id,
    "tags": sorted(dag.tags),
    "doc_md": bool(dag.doc_md),
    "catchup": dag.catchup,
    "dagrun_timeout": dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None,
    "tasks": {t.task_id: {"retries": t.retries, "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None}
              for t in dag.tasks},
}))
"""


@pytest.fixture(scope="module", params=DAG_FILES, ids=lambda p: p.name)
def dag_info(request) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, str(request.param)], capture_output=True, text=True)
    assert result.returncode == 0, f"{request.param.name} failed to import:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_there_are_dags() -> None:
    assert {p.name for p in DAG_FILES} >= {"east_west_nightly.py", "east_west_analyst.py"}


def test_imports_fast(dag_info) -> None:
    assert dag_info["seconds"] < 1.0


def test_no_heavy_imports_at_parse_time(dag_info) -> None:
    loaded = [m for m in dag_info["new_modules"] if m.split(".")[0] in HEAVY]
    assert loaded == []


def test_documented_tagged_and_bounded(dag_info) -> None:
    assert dag_info["doc_md"]
    assert "eastwest" in dag_info["tags"]
    assert dag_info["catchup"] is False
    assert dag_info["dagrun_timeout"] and dag_info["dagrun_timeout"] <= 6 * 3600


def test_every_task_retries_and_has_a_timeout(dag_info) -> None:
    for task_id, task in dag_info["tasks"].items():
        assert task["retries"] >= 2, task_id
        assert task["timeout"], task_id


def test_dag_files_are_thin() -> None:
    for path in DAG_FILES:
        code = [
            line for line in Path(path).read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]
        assert len(code) < 80, f"{path.name} has {len(code)} lines; move logic into plugins/eastwest"
