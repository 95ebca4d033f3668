"""The Airflow UI's "Report" tab on every DAG run and its "Western hubs" page.

Both are pages of a FastAPI app mounted on the API server under ``/eastwest``
(:mod:`eastwest.ui.app`, which checks the login and the DAG permission on every route); the UI
shows them in iframes. This file only declares them.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class EastWestUiPlugin(AirflowPlugin):
    name = "eastwest_ui"

    @property
    def fastapi_apps(self):
        from eastwest.ui.app import app

        return [{"app": app, "url_prefix": "/eastwest", "name": "East → west reports"}]

    external_views = [
        {
            "name": "Report",
            "href": "/eastwest/reports/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "eastwest-report",
        },
        {
            "name": "Western hubs",
            "href": "/eastwest/hubs",
            "destination": "nav",
            "category": "browse",
            "url_route": "eastwest-hubs",
        },
    ]
