"""Development tools: local hubs, WAN emulation, the local Airflow stack, demo data. Not shipped.

Nothing in the product package (``eastwest``) imports these.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The repository these tools serve (its dags/, include/, sql/ and .local/).
REPO_ROOT = Path(__file__).resolve().parents[2]


def postgres_connection(url: str) -> str:
    """An Airflow connection (JSON) for a PostgreSQL URL of this machine (``postgresql://user@host:port/db``)."""
    rest = url.split("://", 1)[1]
    user, hostpart = rest.split("@", 1)
    host, db = hostpart.split("/", 1)
    name, port = host.split(":")
    return json.dumps({"conn_type": "postgres", "host": name, "port": int(port), "login": user, "schema": db})


@contextmanager
def fresh_pg_database(admin_url: str, name: str) -> Iterator[str]:
    """Create an empty PostgreSQL database ``name`` (dropping any left from before), drop it
    afterwards; yields its URL. ``admin_url`` is a database of the same server to connect to."""
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg2://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
