"""The nightly KPIs the stock Airflow way, built only from stock operators (the e2e benchmark's baseline).

SQL → CSV (``COPY … TO STDOUT`` through psycopg2's ``copy_expert``, what ``PostgresHook.copy_expert``
wraps; the Postgres provider is not installed here) → ``SFTPOperator`` put → ``SSHOperator`` running
a pandas script on the hub → ``SFTPOperator`` get → pandas ``to_sql`` into the warehouse, after
deleting the day (a rerun replaces it). Same data, same link, same result as ``east_west_nightly``.
``bench/e2e_bench.py`` runs it with ``dag.test()``; the run's settings come from ``E2E_*`` variables.
"""

from __future__ import annotations

import os
import shlex

from airflow.providers.sftp.operators.sftp import SFTPOperator
from airflow.providers.ssh.operators.ssh import SSHOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

CONN = "e2e_plain"  # a plain login on the hub (no forced command): what the stock operators need
WORK = os.environ.get("E2E_WORK", "/tmp/e2e-stock")
HUB_DIR = os.environ.get("E2E_HUB_DIR", "/tmp/e2e-hub")
HUB_PYTHON = os.environ.get("E2E_HUB_PYTHON", "python3")
DB = os.environ.get("E2E_DB", "postgresql://postgres@127.0.0.1:5432/eastwest_e2e")
DAY = os.environ.get("E2E_DAY", "2026-10-01")
TABLE = "daily_kpis_stock"


def extract_csv() -> None:
    import datetime as dt

    import psycopg2

    day = dt.date.fromisoformat(DAY)
    start = dt.datetime.combine(day, dt.time()) - dt.timedelta(hours=8)  # Asia/Shanghai day in UTC
    query = (
        "SELECT ts, enterprise_id, machine_id, power_kw, temperature_c, vibration_mm_s, status FROM readings "
        f"WHERE ts >= '{start:%Y-%m-%d %H:%M:%S}' AND ts < '{start + dt.timedelta(days=1):%Y-%m-%d %H:%M:%S}' "
        "ORDER BY ts, machine_id"
    )
    os.makedirs(WORK, exist_ok=True)
    with psycopg2.connect(DB) as conn, conn.cursor() as cur, open(f"{WORK}/readings.csv", "w") as f:
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH CSV HEADER", f)


def publish_sql() -> None:
    import pandas as pd
    import sqlalchemy as sa

    frame = pd.read_csv(f"{WORK}/daily_kpis.csv")
    engine = sa.create_engine(DB.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:
        if sa.inspect(conn).has_table(TABLE):
            conn.execute(sa.text(f"DELETE FROM {TABLE} WHERE day = :day"), {"day": DAY})
        frame.to_sql(TABLE, conn, if_exists="append", index=False)
    engine.dispose()


with DAG("e2e_stock_nightly", schedule=None, catchup=False, tags=["bench"]) as dag:
    script = f"{HUB_DIR}/stock_kpis.py"
    (
        PythonOperator(task_id="extract_csv", python_callable=extract_csv)
        >> SFTPOperator(
            task_id="put_csv",
            ssh_conn_id=CONN,
            local_filepath=f"{WORK}/readings.csv",
            remote_filepath=f"{HUB_DIR}/inbox/readings.csv",
            operation="put",
        )
        >> SSHOperator(
            task_id="compute_pandas",
            ssh_conn_id=CONN,
            command=shlex.join(
                [HUB_PYTHON, script, f"{HUB_DIR}/inbox/readings.csv", f"{HUB_DIR}/outbox/daily_kpis.csv"]
            ),
            cmd_timeout=None,
        )
        >> SFTPOperator(
            task_id="get_csv",
            ssh_conn_id=CONN,
            local_filepath=f"{WORK}/daily_kpis.csv",
            remote_filepath=f"{HUB_DIR}/outbox/daily_kpis.csv",
            operation="get",
        )
        >> PythonOperator(task_id="publish_sql", python_callable=publish_sql)
    )
