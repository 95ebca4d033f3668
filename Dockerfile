# East side: Airflow 3.3 with this project's pinned requirements, DAGs, plugins and files.
#   docker build -t eastwest-airflow .
# Hubs are reached over SSH with pinned host keys: register each hub as an SSH connection
# (see README "Connecting a real western hub").
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

USER airflow
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
# Pin Airflow to the base image's version so pip never swaps it out.
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /opt/airflow/requirements.txt

COPY --chown=airflow:0 airflow.cfg /opt/airflow/airflow.cfg
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 sql/ /opt/airflow/sql/

ENV AIRFLOW_CONFIG=/opt/airflow/airflow.cfg \
    PYTHONPATH=/opt/airflow/plugins:/opt/airflow/include \
    EASTWEST_DATA_DIR=/opt/airflow/data \
    GX_ANALYTICS_ENABLED=false
