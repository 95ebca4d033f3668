"""Shared fixtures: an isolated Airflow home, real sshd hubs, and a scratch PostgreSQL database.

The environment is set at import time, before anything imports Airflow, so the tests never touch
the demo's metadata DB, data or hubs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest

import eastwest_dev
from eastwest_dev import postgres_connection

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))  # the project's jobs package, for golden-frame tests
# EASTWEST_TEST_HOME lets a second test session (e.g. only unit tests) run next to a running one
# without wiping its hubs and metadata DB.
TEST_HOME = Path(os.environ.get("EASTWEST_TEST_HOME") or ROOT / ".local" / "test")
shutil.rmtree(TEST_HOME, ignore_errors=True)
TEST_HOME.mkdir(parents=True)

os.environ.update(
    {
        "AIRFLOW_HOME": str(TEST_HOME / "airflow"),
        "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{TEST_HOME / 'airflow' / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "EASTWEST_DATA_DIR": str(TEST_HOME / "data"),
        "EASTWEST_HUBS_DIR": str(TEST_HOME / "hubs"),
        "GX_ANALYTICS_ENABLED": "false",
        # The project's DAGs plus test-only DAGs (dag.test() runs only DAGs that live in a bundle).
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            [
                {
                    "name": "dags-folder",
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {},
                },
                {
                    "name": "test-dags",
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(ROOT / "tests" / "dags")},
                },
            ]
        ),
    }
)
(TEST_HOME / "airflow").mkdir()

HUB_PORT_BASE = int(os.environ.get("EASTWEST_TEST_HUB_PORT_BASE", "22201"))
WEST_PYTHON = ROOT / ".local" / "west-venv" / "bin" / "python"
PG_ADMIN_URL = os.environ.get("EASTWEST_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# A second session with its own EASTWEST_TEST_HOME gets its own database too.
PG_TEST_DB = "eastwest_test" + (
    "" if "EASTWEST_TEST_HOME" not in os.environ else "_" + re.sub(r"\W", "_", TEST_HOME.name)
)


@pytest.fixture(scope="session")
def hubs():
    """Start two real sshd hubs on 127.0.0.1 (ports 22201+) and register them as connections."""
    from eastwest_dev import localhubs

    state = TEST_HOME / "hubs"
    connections = localhubs.up(state, HUB_PORT_BASE, str(WEST_PYTHON))
    localhubs.export_connections(state)
    try:
        yield connections
    finally:
        localhubs.down(state, HUB_PORT_BASE)


@pytest.fixture(scope="session")
def airflow_db():
    """Migrate the isolated SQLite metadata DB once per session."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def fresh_pg_database(name: str) -> AbstractContextManager[str]:
    """Create an empty PostgreSQL database on the test server; drop it afterwards. Yields its URL."""
    return eastwest_dev.fresh_pg_database(PG_ADMIN_URL, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_warehouse(request, tmp_path) -> Iterator[str]:
    """A warehouse holding no tables yet, on SQLite and on PostgreSQL (a database of its own)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    with fresh_pg_database("eastwest_test_empty_warehouse") as pg:
        yield pg


@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database for the session (east source and warehouse), dropped at the end."""
    with fresh_pg_database(PG_TEST_DB) as url:
        yield url


@contextmanager
def east_on_postgres(url: str) -> Iterator[None]:
    """Point the east_source and east_warehouse connections at PostgreSQL ``url`` for the block."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_EAST_SOURCE", postgres_connection(url))
    mp.setenv("AIRFLOW_CONN_EAST_WAREHOUSE", postgres_connection(url))
    try:
        yield
    finally:
        mp.undo()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh EASTWEST_DATA_DIR for one test."""
    path = tmp_path / "data"
    monkeypatch.setenv("EASTWEST_DATA_DIR", str(path))
    return path


def load_dag(path: Path):
    """Import a DAG file the way the DAG processor does and return its ``dag``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"dagfile_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def hub_connection(name: str) -> dict:
    return json.loads(os.environ[f"AIRFLOW_CONN_{name.upper()}"])


#: The hub the stack tests' placement prefers: it declares a very fast link (the others 0.05 MB/s),
#: but its real transfers are capped at 0.5 Mbit/s, so a ship to it lasts long enough to be cut.
STACK_FAVOURITE = "west_gansu"
#: The stack's viewer who may read the analyst DAG's runs only.
SCOPED_USER = "analyst"


@pytest.fixture(scope="session")
def stack_east(pg_url, hubs, tmp_path_factory) -> dict[str, str]:
    """The environment of the real Airflow stack: PostgreSQL as east source and warehouse, and the
    hubs declaring one compute slot each (so each hub's pool has one slot, while the hubs
    themselves would run four jobs at once)."""
    env = {
        "AIRFLOW_CONN_EAST_SOURCE": postgres_connection(pg_url),
        "AIRFLOW_CONN_EAST_WAREHOUSE": postgres_connection(pg_url),
        "EASTWEST_DATA_DIR": str(tmp_path_factory.mktemp("stack-data")),
        "EASTWEST_PROJECT_DIR": str(ROOT),
        # An analyst who may read only the analyst DAG's runs (the report pages' 403 is tested with it).
        "AIRFLOW__CORE__AUTH_MANAGER": "eastwest_dev.auth.DagScopedAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{SCOPED_USER}:viewer",
        "EASTWEST_DEV_DAG_SCOPES": json.dumps({SCOPED_USER: ["east_west_analyst"]}),
    }
    for name in hubs:
        conn = hub_connection(name)
        conn["extra"].update({"eastwest_slots": 1, "eastwest_link_mb_s": 0.05, "eastwest_rtt_ms": 20})
        if name == STACK_FAVOURITE:
            conn["extra"].update({"eastwest_link_mb_s": 1000, "eastwest_rate_limit_mbps": 0.5})
        env[f"AIRFLOW_CONN_{name.upper()}"] = json.dumps(conn)
    return env


@pytest.fixture(scope="session")
def local_stack(stack_east):
    """One real Airflow stack (LocalExecutor, PostgreSQL metadata DB) for every module that needs it:
    starting one takes minutes on two cores. ``test_stack``'s Celery test stops it (the last user)."""
    from eastwest_dev.stack import Stack

    with fresh_pg_database("eastwest_airflow_local") as db:
        stack = Stack(
            state_dir=TEST_HOME / "stack-local", port=28080, executor="local", db_url=db, extra_env=stack_east
        )
        try:
            print(f"stack up in {stack.up():.1f}s")
            yield stack
        finally:
            stack.down()
            assert not stack.processes(), "a process of the stack outlived `down`"


#: The project's jobs (a private module such as ``_energy`` travels in the bundle but is not one).
PROJECT_JOBS = ["daily_kpis", "energy_forecast", "energy_per_unit", "score_energy_forecast", "train_energy_forecast"]

#: The energy forecast's test history: four weeks of training (the week of FORECAST_WEEK and the
#: three before it), the next day to forecast and score. Days no other test uses.
FORECAST_MACHINES = 36
FORECAST_WEEK = date(2026, 7, 27)  # a Monday: the training run covers it and the 21 days before
FORECAST_DAYS = [FORECAST_WEEK - timedelta(days=21) + timedelta(days=i) for i in range(29)]


@pytest.fixture(scope="session")
def forecast_east(pg_url) -> str:
    """The session's PostgreSQL source holds the forecast's history (loaded once per session)."""
    from eastwest_dev import telemetry

    for day in FORECAST_DAYS:
        if telemetry.count_day(pg_url, day) != FORECAST_MACHINES * 1440:
            telemetry.load_day(pg_url, day, telemetry.generate_day(day, FORECAST_MACHINES))
    return pg_url
