"""Project settings: where things live and which hubs exist.

Everything is read from environment variables with embedded defaults, so a fresh clone runs with
SQLite and local hubs, and a deployment points the same code at PostgreSQL and real western nodes.
Nothing here touches the network or a database: DAG files import it at parse time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: Hubs a DAG may use. Each name is also the Airflow SSH connection id of that hub.
DEFAULT_HUBS = ("west_guizhou", "west_ningxia")

#: Jobs the western runner has registered (the runner re-checks; this list feeds the UI forms).
JOBS = ("daily_kpis",)

#: The local timezone of the east-side business day.
LOCAL_TZ = "Asia/Shanghai"

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    """Resolved paths and URLs for one process."""

    data_dir: Path
    source_url: str
    warehouse_url: str
    hubs: tuple[str, ...]
    default_hub: str

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"


def get_settings() -> Settings:
    """Read the settings from the environment (cheap; call it where needed)."""
    data_dir = _env_path("EASTWEST_DATA_DIR", PROJECT_ROOT / ".local" / "data")
    hubs = tuple(h.strip() for h in os.environ.get("EASTWEST_HUBS", ",".join(DEFAULT_HUBS)).split(",") if h.strip())
    for hub in hubs:
        if not SAFE_NAME.fullmatch(hub):
            raise ValueError(f"EASTWEST_HUBS: hub name {hub!r} must match {SAFE_NAME.pattern}")
    return Settings(
        data_dir=data_dir,
        source_url=os.environ.get("EASTWEST_SOURCE_URL", f"sqlite:///{data_dir / 'east_source.db'}"),
        warehouse_url=os.environ.get("EASTWEST_WAREHOUSE_URL", f"sqlite:///{data_dir / 'warehouse.db'}"),
        hubs=hubs,
        default_hub=os.environ.get("EASTWEST_DEFAULT_HUB", hubs[0]),
    )


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a safe identifier for paths and remote arguments, else raise."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise ValueError(
            f"{kind} {value!r} is not allowed: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value
