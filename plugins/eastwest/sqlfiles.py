"""Load SQL from the project's ``sql/`` folder. Jinja shapes the statement; values are always bound."""

from __future__ import annotations

from functools import cache
from typing import Any

from eastwest.settings import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "sql"


@cache
def _raw(name: str) -> str:
    return (SQL_DIR / name).read_text()


def render(name: str, **shape: Any) -> str:
    """Return the statement in ``sql/<name>``, rendered with Jinja switches (never values)."""
    import jinja2

    text = _raw(name)
    if "{%" in text or "{{" in text:
        text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(text).render(**shape)
    return text


def statements(name: str) -> list[str]:
    """Split a file of DDL statements on ';' (our DDL files hold no literal semicolons)."""
    lines = [line for line in _raw(name).splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def engine(url: str) -> Any:
    """A SQLAlchemy engine for a source or warehouse URL (SQLite or PostgreSQL)."""
    import sqlalchemy as sa

    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")  # the pinned driver
    return sa.create_engine(url)


def redact(url: str) -> str:
    """A URL safe for logs: any password replaced."""
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)
