"""East-Data-West-Compute on Airflow: the east-side library (hooks, operators, pipeline steps)."""
