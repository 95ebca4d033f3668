"""Project settings: where a project's files live, where run data goes, which hubs exist.

Everything is read from environment variables with embedded defaults, so a fresh clone runs with
SQLite and local hubs, and a deployment points the same code at PostgreSQL and real western nodes.
Nothing here touches the network or a database: DAG files import it at parse time.

The *project* is the folder that holds ``dags/``, ``include/jobs/``, ``include/expectations/`` and
``sql/``; it is the parent of the DAG file being parsed unless ``EASTWEST_PROJECT_DIR`` says
otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from eastwest.west.protocol import check_name

#: Hubs a DAG may use when ``EASTWEST_HUBS`` is not set: one per western region of the national plan.
#: Each name is also the hub's SSH connection id and, prefixed with ``eastwest_``, its Airflow pool.
DEFAULT_HUBS = ("west_guizhou", "west_neimenggu", "west_gansu", "west_ningxia")
#: The hub a run asks for unless it names one: placement chooses (``eastwest.hub.placement``).
AUTO_HUB = "auto"
#: Placement policies (``eastwest.hub.placement.POLICIES``).
POLICIES = ("fastest", "cheapest")

#: Connection ids that fall back to an embedded SQLite database when no Airflow connection exists.
EMBEDDED_CONNECTIONS = {"east_source": "east_source.db", "east_warehouse": "warehouse.db"}

#: The local time zone of the east-side business day.
LOCAL_TZ = "Asia/Shanghai"


def pool_name(hub: str) -> str:
    """The Airflow pool that caps the compute jobs running on ``hub`` at once."""
    return f"eastwest_{hub}"


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Project:
    """A project's folders: DAGs, jobs, expectation suites and SQL."""

    root: Path

    @property
    def jobs_dir(self) -> Path:
        return self.root / "include" / "jobs"

    @property
    def suites_dir(self) -> Path:
        return self.root / "include" / "expectations"

    @property
    def sql_dir(self) -> Path:
        return self.root / "sql"

    @classmethod
    def for_dag_file(cls, dag_file: str | Path | None) -> Project:
        override = os.environ.get("EASTWEST_PROJECT_DIR")
        if override:
            return cls(Path(override).expanduser().resolve())
        if dag_file:
            return cls(Path(dag_file).resolve().parent.parent)
        return cls(Path.cwd().resolve())


@dataclass(frozen=True)
class Settings:
    """Resolved paths and hub names for one process."""

    data_dir: Path
    hubs: tuple[str, ...]
    default_hub: str
    default_policy: str = "fastest"

    @property
    def hub_choices(self) -> tuple[str, ...]:
        """What a run may ask for: ``auto`` or a configured hub."""
        return (AUTO_HUB, *self.hubs)

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    def embedded_url(self, conn_id: str) -> str | None:
        """The SQLite URL an embedded default connection id stands for, if it is one."""
        name = EMBEDDED_CONNECTIONS.get(conn_id)
        return f"sqlite:///{self.data_dir / name}" if name else None


def get_settings(project: Project | None = None) -> Settings:
    """Read the settings from the environment (cheap; call it where needed).

    Without ``EASTWEST_DATA_DIR`` the data directory is the project's ``.local/data`` (the
    working directory's when no project is known), the same for every Airflow process.
    """
    base = project.root if project is not None else Path.cwd().resolve()
    data_dir = _env_path("EASTWEST_DATA_DIR", base / ".local" / "data")
    hubs = tuple(h.strip() for h in os.environ.get("EASTWEST_HUBS", ",".join(DEFAULT_HUBS)).split(",") if h.strip())
    for hub in hubs:
        check_name("hub in EASTWEST_HUBS", hub)
    if not hubs:
        raise ValueError("EASTWEST_HUBS names no hub; set it to a comma-separated list of hub connection ids")
    default_hub = os.environ.get("EASTWEST_DEFAULT_HUB", AUTO_HUB)
    if default_hub not in (AUTO_HUB, *hubs):
        raise ValueError(
            f"EASTWEST_DEFAULT_HUB {default_hub!r} is neither {AUTO_HUB!r} nor one of EASTWEST_HUBS ({', '.join(hubs)})"
        )
    policy = os.environ.get("EASTWEST_PLACEMENT_POLICY", POLICIES[0])
    if policy not in POLICIES:
        raise ValueError(f"EASTWEST_PLACEMENT_POLICY {policy!r} is not one of {', '.join(POLICIES)}")
    return Settings(data_dir=data_dir, hubs=hubs, default_hub=default_hub, default_policy=policy)
