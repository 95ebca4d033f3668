"""One task that does nothing: ``bench/e2e_bench.py`` times it to learn what ``dag.test()`` itself
costs in a fresh process (its in-process API server, the first task's start), paid by both ways."""

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

with DAG("e2e_harness_noop", schedule=None, catchup=False, tags=["bench"]) as dag:
    PythonOperator(task_id="noop", python_callable=lambda: None)
