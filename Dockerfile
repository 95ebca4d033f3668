# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target east -t eastwest-airflow .     # Airflow 3.3 with this project
#   docker build --target west -t eastwest-west-node .   # a western hub: sshd + the runner, no Airflow

# -- east: scheduler, api-server, workers ---------------------------------------------------------
FROM apache/airflow:3.3.2-python3.11 AS east

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

# -- west: a hub node ------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS west

RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-server \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /run/sshd \
    && useradd --create-home --shell /bin/sh eastwest

COPY requirements-west.txt /tmp/requirements-west.txt
COPY include/westnode/ /tmp/westnode/
# The same install script the tests run (tests/test_deploy.py).
RUN sh /tmp/westnode/install.sh /srv/eastwest /tmp/requirements-west.txt /tmp/westnode python3 \
    && chown -R eastwest /srv/eastwest/scratch /srv/eastwest/chunks /srv/eastwest/jobs \
    && rm -rf /tmp/westnode /tmp/requirements-west.txt

# Host keys are generated at first start (keep them on a volume so the pinned key stays valid);
# the east side's public key goes to /home/eastwest/.ssh/authorized_keys with the `restrict` option.
RUN printf '%s\n' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' 'PermitRootLogin no' \
        'AllowUsers eastwest' 'AcceptEnv none' 'MaxStartups 64:30:128' 'MaxSessions 64' \
        > /etc/ssh/sshd_config.d/eastwest.conf
EXPOSE 22
CMD ["/bin/sh", "-c", "ssh-keygen -A && exec /usr/sbin/sshd -D -e"]
