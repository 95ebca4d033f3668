"""The "Add a workload" tutorial, carried out as written, in a fresh copy of the project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.integration

TUTORIAL = ROOT / "docs" / "add-a-workload.md"
FILE_MARK = re.compile(r"^(?:#|//) file: (\S+)\n")


def tutorial_files() -> dict[str, str]:
    """Every code block of the tutorial that names a file, as {path: content}."""
    blocks = re.findall(r"```\w*\n(.*?)```", TUTORIAL.read_text(), flags=re.S)
    files = {}
    for block in blocks:
        mark = FILE_MARK.match(block)
        if mark:
            files[mark.group(1)] = block[mark.end() :]
    return files


def fresh_clone(target: Path) -> Path:
    """The project's tracked files, as a fresh clone has them."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_the_tutorial_names_the_three_files_and_the_dag() -> None:
    assert set(tutorial_files()) == {
        "include/jobs/peak_power.py",
        "include/expectations/peak_power.json",
        "dags/peak_power.py",
        "tests/test_peak_power.py",
    }


def test_following_the_tutorial_publishes_and_a_rerun_changes_nothing(tmp_path, hubs) -> None:
    project = fresh_clone(tmp_path / "project")
    for name, content in tutorial_files().items():
        (project / name).write_text(content)
    home = tmp_path / "airflow"
    env = {
        **os.environ,
        # The copy's own library and tools, not the ones the test runs from.
        "PYTHONPATH": os.pathsep.join([str(project / "src"), str(project / "dev"), str(project / "include")]),
        "EASTWEST_PROJECT_DIR": str(project),
        "EASTWEST_DATA_DIR": str(tmp_path / "data"),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project / "plugins"),
    }
    env.pop("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", None)  # the project's own dags folder only
    env.pop("EASTWEST_TEST_HOME", None)  # the copy's own tests must not wipe this session's hubs
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]

    # Step 4, `make run DAG=peak_power DATE=2026-11-24`: the command that target runs, with the
    # settings the Makefile exports (the test's own hubs instead of starting the demo's).
    run = [sys.executable, "-m", "eastwest_dev.demo", "--dag", "peak_power", "--date", "2026-11-24", "--machines", "20"]
    first = subprocess.run(run, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "partition replaced: 0 rows before, 20 rows now" in first.stdout, first.stdout
    assert "rows published  20 in peak_power" in first.stdout
    second = subprocess.run(run, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "partition unchanged: the same 20 rows were already published (no duplicates)" in second.stdout, (
        first.stdout + second.stdout
    )

    # Step 5: the job's own test passes in the project.
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_peak_power.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert "1 passed" in tested.stdout
    used = subprocess.run(  # the copy's library was the one in use
        [sys.executable, "-c", "import eastwest, eastwest_dev; print(eastwest.__file__, eastwest_dev.__file__)"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(path.startswith(str(project)) for path in used), used
