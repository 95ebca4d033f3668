"""Run the real Airflow 3 stack locally: api-server (UI and REST), scheduler, dag-processor, triggerer.

    python -m eastwest_dev.stack up                      # embedded defaults: SQLite, LocalExecutor
    python -m eastwest_dev.stack up --db postgresql://postgres@127.0.0.1:5432/eastwest_airflow
    python -m eastwest_dev.stack up --executor celery --workers 2 --db postgresql://…   # Redis broker
    python -m eastwest_dev.stack down
    python -m eastwest_dev.stack status

Each process gets its own log and pid file under ``.local/stack/``; ``down`` stops them all. The
login is ``admin`` with a password generated once into ``.local/stack/passwords.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eastwest.east.connections import redact
from eastwest_dev import REPO_ROOT as PROJECT_ROOT

DEFAULT_STATE = PROJECT_ROOT / ".local" / "stack"
DEFAULT_PORT = 8080
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited. A component this process started stays a zombie, which signal 0
    still reaches, until it is reaped: reap it here."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class StackError(RuntimeError):
    """The stack could not be started or reached; the message says where to look."""


@dataclass
class Stack:
    """One local Airflow deployment (its processes, settings and REST access)."""

    state_dir: Path = DEFAULT_STATE
    port: int = DEFAULT_PORT
    #: Where the API server listens: loopback unless EASTWEST_AIRFLOW_HOST says otherwise. The log
    #: servers of the scheduler, triggerer and workers (which always bind every interface) are
    #: not started: every component of this stack shares one log directory.
    host: str = field(default_factory=lambda: os.environ.get("EASTWEST_AIRFLOW_HOST", "127.0.0.1"))
    executor: str = "local"
    db_url: str | None = None
    workers: int = 1
    broker_url: str = "redis://127.0.0.1:6379/0"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::', '') else self.host}:{self.port}"

    @property
    def airflow(self) -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def _secret(self, name: str, make: Any) -> str:
        path = self.state_dir / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(make())
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def password(self) -> str:
        return self.password_of("admin")

    def password_of(self, user: str) -> str:
        """The password of one of the stack's users (``admin``, and the roles ``extra_env`` adds)."""
        users = [u.split(":")[0] for u in self.env_users().split(",")]
        self._secret("passwords.json", lambda: json.dumps({u: secrets.token_urlsafe(12) for u in users}))
        return json.loads((self.state_dir / "passwords.json").read_text())[user]

    def env_users(self) -> str:
        return self.extra_env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")

    def env(self) -> dict[str, str]:
        """The environment every component runs with."""
        home = self.state_dir / "airflow-home"
        home.mkdir(parents=True, exist_ok=True)
        db = self.db_url or f"sqlite:///{home / 'airflow.db'}"
        if db.startswith("postgresql://"):
            db = "postgresql+psycopg2://" + db.removeprefix("postgresql://")
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(PROJECT_ROOT / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "EASTWEST_DATA_DIR": os.environ.get("EASTWEST_DATA_DIR", str(PROJECT_ROOT / ".local" / "data")),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if self.executor == "celery" else "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret", lambda: secrets.token_urlsafe(32)),
            "AIRFLOW__CORE__FERNET_KEY": self._secret("fernet_key", _fernet_key),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.state_dir / "passwords.json"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
            "GX_ANALYTICS_ENABLED": "false",
        }
        if self.executor == "celery":
            env["AIRFLOW__CELERY__BROKER_URL"] = self.broker_url
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + db  # the pinned psycopg2 driver
            env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = "4"
        env.update(self.extra_env)
        self.password  # noqa: B018  (create the passwords file before the api-server reads it)
        return env

    # -- processes ---------------------------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def running(self) -> dict[str, int]:
        alive = {}
        for pid_file in self.state_dir.glob("*.pid"):
            try:
                pid = int(pid_file.read_text())
                os.kill(pid, 0)
                alive[pid_file.stem] = pid
            except (ValueError, ProcessLookupError):
                pid_file.unlink(missing_ok=True)
        return alive

    def start_component(self, name: str, *args: str) -> int:
        log = open(self.state_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [self.airflow, *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.state_dir,  # how processes() finds every process of the stack, however it retitles itself
        )
        self._pid_file(name).write_text(str(proc.pid))
        return proc.pid

    def stop_component(self, name: str, timeout: float = 30.0) -> None:
        self.stop_components([name], timeout)

    def stop_components(self, names: list[str], timeout: float = 30.0) -> None:
        """SIGTERM the process groups of ``names`` together, wait for them together (a component
        that drains its work takes its time once, not once per component), SIGKILL what is left."""
        pids = {name: pid for name, pid in self.running().items() if name in names}
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        alive = dict(pids)
        while alive and time.monotonic() < deadline:
            for name, pid in list(alive.items()):
                if _gone(pid):
                    del alive[name]
            time.sleep(0.2)
        for pid in alive.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        for name in pids:
            self._pid_file(name).unlink(missing_ok=True)

    def migrate(self) -> None:
        result = subprocess.run([self.airflow, "db", "migrate"], env=self.env(), capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"airflow db migrate failed:\n{(result.stdout + result.stderr)[-3000:]}")

    def create_pools(self) -> dict[str, int]:
        """One pool per hub (``eastwest_<hub>``) with the slots the hub declares in its connection."""
        from eastwest.airflow import pools

        env = self.env()
        connections = {}
        for key, value in env.items():
            if key.startswith("AIRFLOW_CONN_") and value.lstrip().startswith("{"):
                connections[key.removeprefix("AIRFLOW_CONN_").lower()] = json.loads(value)
        sizes = pools.hub_slots(connections)
        pools.ensure(sizes, env)
        return sizes

    def up(self, timeout: float = 240.0) -> float:
        """Migrate the metadata DB and start every component; return seconds until healthy."""
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.running():
            raise StackError(f"a stack is already running from {self.state_dir}; run `make airflow-down` first")
        with socket.socket() as probe:
            if probe.connect_ex((self.host, self.port)) == 0:  # another server would answer our requests
                raise StackError(
                    f"something already listens on {self.host}:{self.port}; stop it or choose another port "
                    "(EASTWEST_AIRFLOW_PORT)"
                )
        self.migrate()
        self.create_pools()
        self.start_component("api-server", "api-server", "--host", self.host, "--port", str(self.port))
        for name in ("scheduler", "triggerer"):
            self.start_component(name, name, "--skip-serve-logs")
        self.start_component("dag-processor", "dag-processor")
        for i in range(self.workers if self.executor == "celery" else 0):
            self.start_component(
                f"celery-worker-{i}", "celery", "worker", "--concurrency", "4", "--celery-hostname", f"eastwest{i}@%h",
                "--skip-serve-logs",
            )  # fmt: skip
        self.wait_healthy(timeout)
        return time.monotonic() - started

    def down(self) -> list[str]:
        names = list(self.running())
        self.stop_components([n for n in names if n != "api-server"])
        self.stop_components(["api-server"])  # last: tasks that are stopping still report to it
        self.stop_leftovers()
        return names

    def processes(self) -> list[Any]:
        """Every process of this stack: those that run in its state directory (each component
        starts there and its children inherit it), including task processes that left their
        component's process group. (Their environment cannot tell: setproctitle overwrites it.)"""
        import psutil

        here = str(self.state_dir.resolve())
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.pid != os.getpid() and proc.cwd() == here:
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def stop_leftovers(self, timeout: float = 15.0) -> None:
        import psutil

        left = self.processes()
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(left, timeout=timeout)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def restart(self, name: str, *args: str) -> None:
        self.stop_component(name)
        self.start_component(name, *(args or (name,)))

    # -- REST ------------------------------------------------------------------------------------

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            dead = [n for n in ("api-server", "scheduler", "dag-processor", "triggerer") if n not in self.running()]
            if dead:
                raise StackError(f"{', '.join(dead)} exited during start-up; see {self.state_dir}/{dead[0]}.log")
            try:
                health = self.request("GET", "/api/v2/monitor/health", auth=False)
                states = {k: (v or {}).get("status") for k, v in health.items()}
                if all(s == "healthy" for s in states.values()):
                    return
                last = json.dumps(states)
            except (urllib.error.URLError, ConnectionError, OSError, StackError) as exc:
                last = str(exc)
            time.sleep(1)
        raise StackError(f"the stack did not become healthy in {timeout:.0f}s ({last}); see {self.state_dir}/*.log")

    def token(self) -> str:
        body = json.dumps({"username": "admin", "password": self.password}).encode()
        req = urllib.request.Request(f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            raise StackError(f"{method} {path} → {exc.code}: {exc.read().decode()[:2000]}") from exc

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.request("GET", f"/api/v2/dags/{dag_id}")
                return
            except StackError:
                time.sleep(1)
        raise StackError(f"DAG {dag_id} was not parsed within {timeout:.0f}s; see {self.state_dir}/dag-processor.log")

    def trigger(
        self, dag_id: str, conf: dict[str, Any], logical_date: str | None = None, *, unpause: bool = True
    ) -> str:
        """Unpause ``dag_id`` and start a run (of the interval ``logical_date`` names, for a scheduled DAG).
        With ``unpause=False`` a paused DAG's run is created and stays queued: it exists, nothing runs."""
        self.wait_for_dag(dag_id)
        if unpause:
            self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf})
        return run["dag_run_id"]

    def runs(self, dag_id: str, run_type: str | None = None) -> list[dict[str, Any]]:
        """The DAG's runs (of one type: scheduled, manual, asset_triggered, ...), oldest first."""
        query = "?order_by=run_after" + (f"&run_type={run_type}" if run_type else "")
        return list(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns{query}")["dag_runs"])

    def fail_runs(self, dag_id: str, run_type: str) -> list[str]:
        """Mark the DAG's unfinished runs of ``run_type`` failed (e.g. the scheduled run an unpause created)."""
        failed = []
        for run in self.runs(dag_id, run_type):
            if run["state"] in ("queued", "running"):
                self._fail_run(dag_id, run["dag_run_id"])
                failed.append(run["dag_run_id"])
        return failed

    def _fail_run(self, dag_id: str, run_id: str, attempts: int = 3) -> None:
        """Mark one run failed. The scheduler may be updating the same rows (PostgreSQL then aborts
        one side, the API answers 500 "Database error"): read the run again and retry."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
        for attempt in range(1, attempts + 1):
            try:
                self.request("PATCH", path, {"state": "failed"})
                return
            except StackError as exc:
                if " → 500:" not in str(exc) or attempt == attempts:
                    raise
                time.sleep(attempt)
                if self.request("GET", path)["state"] not in ("queued", "running"):
                    return

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600.0) -> str:
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            state = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise StackError(f"run {run_id} of {dag_id} still {state} after {timeout:.0f}s")


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eastwest_dev.stack", description="Run the local Airflow stack.")
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--executor", choices=("local", "celery"), default=os.environ.get("EASTWEST_EXECUTOR", "local"))
    parser.add_argument("--db", default=os.environ.get("EASTWEST_AIRFLOW_DB"), help="metadata DB URL (default SQLite)")
    parser.add_argument("--workers", type=int, default=1, help="celery workers")
    parser.add_argument("--port", type=int, default=int(os.environ.get("EASTWEST_AIRFLOW_PORT", DEFAULT_PORT)))
    args = parser.parse_args(argv)
    stack = Stack(port=args.port, executor=args.executor, db_url=args.db, workers=args.workers)
    try:
        if args.action == "up":
            seconds = stack.up()
            stack.wait_for_dag("east_west_nightly")
            stack.request("PATCH", "/api/v2/dags/east_west_nightly", {"is_paused": False})  # runs on its schedule
            db = redact(args.db) if args.db else "SQLite"
            print(f"Airflow is up in {seconds:.0f}s ({stack.executor} executor, metadata DB {db})")
            print(f"  UI and REST API: {stack.url}   login: admin / {stack.password}")
            print(
                "  east_west_nightly is unpaused and runs at 00:30 Asia/Shanghai; trigger east_west_analyst from the UI"
            )
            print(f"  logs: {stack.state_dir}/*.log   stop: make airflow-down")
        elif args.action == "down":
            stopped = stack.down()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        else:
            running = stack.running()
            print("\n".join(f"{name}: pid {pid}" for name, pid in running.items()) or "not running")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
