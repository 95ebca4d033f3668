"""An auth manager for the test stack that can refuse a user the runs of some DAGs.

Airflow's SimpleAuthManager gives every role the same DAGs, so it cannot express "this user may
read only that DAG". This one is SimpleAuthManager, except that a user named in
``EASTWEST_DEV_DAG_SCOPES`` (JSON: user → list of DAG ids) may use only the DAGs listed for them.
It lets the tests prove that the report pages ask the auth manager in use about the run's DAG
(a production deployment uses its own auth manager: FAB, Keycloak, ...).
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

SCOPES_ENV = "EASTWEST_DEV_DAG_SCOPES"


def _scopes() -> dict[str, list[str]]:
    return json.loads(os.environ.get(SCOPES_ENV) or "{}")


class DagScopedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        allowed = _scopes().get(user.get_name())
        if allowed is not None and details is not None and details.id is not None and details.id not in allowed:
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)

    def get_authorized_dag_ids(self, *, user: Any, method: Any = "GET", **kwargs: Any) -> set[str]:
        found = super().get_authorized_dag_ids(user=user, method=method, **kwargs)
        allowed = _scopes().get(user.get_name())
        return found if allowed is None else found & set(allowed)
