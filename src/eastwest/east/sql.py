"""Load SQL files. Jinja shapes a statement (identifiers, optional clauses); values are always bound.

Two places hold SQL: the project's ``sql/`` folder (the queries of its inputs) and this package's
``sql/`` folder (the warehouse statements every target uses). Identifiers reach Jinja only through
the ``ident`` filter, which accepts plain lower-case names and quotes them.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

LIBRARY_SQL = Path(__file__).resolve().parent / "sql"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def ident(name: Any) -> str:
    """A validated, double-quoted SQL identifier."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain SQL identifier ([a-z_][a-z0-9_]*)")
    return f'"{name}"'


@cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["ident"] = ident
    return env


@cache
def _read(path: Path, mtime: float) -> str:
    return path.read_text()


def render_file(path: Path, **shape: Any) -> str:
    """The statement in ``path`` rendered with Jinja switches and identifiers (never values)."""
    text = _read(path, path.stat().st_mtime)
    if "{%" in text or "{{" in text:
        text = _environment().from_string(text).render(**shape)
    return text.strip().rstrip(";")


def library(name: str, **shape: Any) -> str:
    """One of this package's own statements (``sql/<name>``)."""
    return render_file(LIBRARY_SQL / name, **shape)


def statements(text: str) -> list[str]:
    """Split a file of DDL statements on ';' (DDL files hold no literal semicolons)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
