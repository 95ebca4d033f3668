"""Development tools: local hubs, WAN emulation, the local Airflow stack, demo data. Not shipped.

Nothing in the product package (``eastwest``) imports these.
"""

import json
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
