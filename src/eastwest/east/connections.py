"""Database URLs from Airflow connections, with the embedded SQLite defaults.

Sources and warehouses are Airflow connections, like the hubs. ``east_source`` and
``east_warehouse`` fall back to SQLite files in the data directory when no connection of that id
exists, so a fresh clone runs with zero set-up. URLs are ``sqlite:///<path>`` or
``postgresql://user[:password]@host:port/db``; :func:`redact` hides passwords in logs.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import quote

from eastwest.settings import Settings, get_settings

#: libpq options a postgres connection's extras may carry (TLS above all).
LIBPQ_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name")


class ConnectionNotFound(LookupError):
    """An Airflow connection id that is not defined (and is not an embedded default)."""


def _airflow_connection(conn_id: str) -> Any | None:
    try:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # pragma: no cover - only without Airflow
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:  # what the SDK raises for an undefined id, in every context
        return None


def url_of(conn: Any) -> str:
    """The URL of an Airflow connection of type sqlite or postgres."""
    kind = (conn.conn_type or "").lower()
    if kind == "sqlite":
        path = conn.host or conn.schema
        if not path:
            raise ValueError(f"connection {conn.conn_id!r}: a sqlite connection needs the database path as its host")
        return f"sqlite:///{path}"
    if kind in ("postgres", "postgresql"):
        auth = quote(conn.login or "", safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        name = conn.host or "127.0.0.1"
        host = f"{'[' + name + ']' if ':' in name else name}:{conn.port or 5432}"
        extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
        query = "&".join(f"{k}={quote(str(extra[k]), safe='')}" for k in LIBPQ_OPTIONS if extra.get(k))
        return (
            f"postgresql://{auth + '@' if auth else ''}{host}/{conn.schema or 'postgres'}{'?' + query if query else ''}"
        )
    raise ValueError(f"connection {conn.conn_id!r} has type {kind!r}; sources and warehouses are sqlite or postgres")


def database_url(conn_id: str, settings: Settings | None = None) -> str:
    """The database URL of ``conn_id``; raises :class:`ConnectionNotFound` with what to do."""
    conn = _airflow_connection(conn_id)
    if conn is not None:
        return url_of(conn)
    embedded = (settings or get_settings()).embedded_url(conn_id)
    if embedded:
        return embedded
    raise ConnectionNotFound(
        f"Airflow connection {conn_id!r} is not defined; add it (Admin → Connections, or the environment "
        f"variable AIRFLOW_CONN_{conn_id.upper()}) as a sqlite or postgres connection"
    )


@cache
def exists(conn_id: str) -> bool:
    """Whether ``conn_id`` resolves (checked once per process when a DAG file is parsed)."""
    try:
        database_url(conn_id)
    except ConnectionNotFound:
        return False
    return True


def redact(url: str) -> str:
    """A URL safe for logs: any password replaced."""
    if "@" not in url:
        return url
    url = url.split("?", 1)[0]
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in creds else ''}@{host}"
