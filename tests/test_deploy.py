"""Deployment: the Dockerfile lints clean, and the western image's install steps work as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

HADOLINT = Path(sys.executable).with_name("hadolint")


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run([str(HADOLINT), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_has_an_east_and_a_west_target() -> None:
    text = (ROOT / "Dockerfile").read_text()
    targets = dict(re.findall(r"^FROM (\S+) AS (\w+)$", text, flags=re.M))
    assert set(targets.values()) == {"east", "west"}
    west = text.split(" AS west", 1)[1]
    assert "apache-airflow" not in west and "requirements.txt" not in west.replace("requirements-west.txt", "")
    assert "install.sh /srv/eastwest /tmp/requirements-west.txt /tmp/eastwest python3" in west
    assert "COPY dev/" not in text  # development tools stay out of both images


@pytest.mark.integration
def test_west_install_steps_give_a_working_runner_without_airflow(tmp_path) -> None:
    root = tmp_path / "srv-eastwest"
    result = subprocess.run(
        [
            "sh",
            str(ROOT / "src" / "eastwest" / "west" / "install.sh"),
            str(root),
            str(ROOT / "requirements-west.txt"),
            str(ROOT / "src" / "eastwest"),
            sys.executable,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    python = root / "venv" / "bin" / "python"
    # The base runner answers, and runs no job until a bundle was shipped and verified.
    jobs = subprocess.run(
        [str(python), "-B", "-m", "eastwest.west.runner", "--root", str(root), "jobs", "--bundle", "0" * 64],
        env={"PYTHONPATH": str(root / "opt")},
        capture_output=True,
        text=True,
    )
    assert jobs.returncode == 4 and "not installed on this hub" in jobs.stderr, jobs.stderr
    have = subprocess.run(
        [str(python), "-B", "-m", "eastwest.west.runner", "--root", str(root), "have"],
        env={"PYTHONPATH": str(root / "opt")},
        input=json.dumps(["a" * 64]),
        capture_output=True,
        text=True,
    )
    assert have.returncode == 0 and json.loads(have.stdout) == [], have.stderr
    assert sorted(p.name for p in (root / "opt" / "eastwest").iterdir()) == ["__init__.py", "west"]
    # The forced command it installs runs runner commands and refuses anything else.
    serve = root / "bin" / "eastwest-serve"
    assert f'restrict,command="{serve}"' in result.stdout
    answered = subprocess.run(
        [str(serve)], env={"SSH_ORIGINAL_COMMAND": "have"}, input="[]", capture_output=True, text=True
    )
    assert answered.returncode == 0 and json.loads(answered.stdout) == [], answered.stderr
    refused = subprocess.run([str(serve)], env={"SSH_ORIGINAL_COMMAND": "id"}, capture_output=True, text=True)
    assert refused.returncode == 2 and "refused: 'id' is not a runner command" in refused.stderr
    assert "refused: 'id'" in (root / "log" / "refused.log").read_text()
    assert json.loads((root / "limits.json").read_text()) == {
        "max_memory_mb": 8192, "max_cpu_seconds": 3600, "slots": len(os.sched_getaffinity(0))
    }  # fmt: skip
    assert subprocess.run([str(python), "-c", "import airflow"], capture_output=True).returncode != 0
    pinned = dict(
        line.split("==") for line in (ROOT / "requirements-west.txt").read_text().splitlines() if "==" in line
    )
    installed = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    for name in ("polars", "pyarrow"):
        assert f"{name}=={pinned[name]}" in installed
