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

# The library as an installed package; the project (DAGs, jobs, suites, SQL) beside it. The
# development tools (dev/) stay out of the image.
COPY --chown=airflow:0 pyproject.toml /opt/airflow/src-eastwest/pyproject.toml
COPY --chown=airflow:0 src/ /opt/airflow/src-eastwest/src/
RUN pip install --no-cache-dir --no-deps /opt/airflow/src-eastwest
COPY --chown=airflow:0 airflow.cfg /opt/airflow/airflow.cfg
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 sql/ /opt/airflow/sql/

ENV AIRFLOW_CONFIG=/opt/airflow/airflow.cfg \
    EASTWEST_DATA_DIR=/opt/airflow/data \
    GX_ANALYTICS_ENABLED=false

# -- west: a hub node ------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS west

RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-server \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /run/sshd \
    && useradd --system --create-home --shell /bin/sh eastwest \
    && usermod -p '*' eastwest

COPY requirements-west.txt /tmp/requirements-west.txt
COPY src/eastwest/__init__.py /tmp/eastwest/__init__.py
COPY src/eastwest/west/ /tmp/eastwest/west/
# The same install script the tests run (tests/test_deploy.py). Jobs arrive as bundles with runs.
RUN HUB_USER=eastwest sh /tmp/eastwest/west/install.sh /srv/eastwest /tmp/requirements-west.txt /tmp/eastwest python3 \
    && rm -rf /tmp/eastwest /tmp/requirements-west.txt

# Host keys are generated at first start (keep them on a volume so the pinned key stays valid);
# the east side's public key goes to /home/eastwest/.ssh/authorized_keys as
#   restrict,command="/srv/eastwest/bin/eastwest-serve" <key>
# and sshd forces that command for the user anyway: the key runs the runner and nothing else.
RUN printf '%s\n' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' 'PermitRootLogin no' \
        'AllowUsers eastwest' 'AcceptEnv none' 'MaxStartups 64:30:128' 'MaxSessions 64' \
        'DisableForwarding yes' 'PermitTTY no' 'ForceCommand /srv/eastwest/bin/eastwest-serve' \
        > /etc/ssh/sshd_config.d/eastwest.conf
EXPOSE 22
CMD ["/bin/sh", "-c", "ssh-keygen -A && exec /usr/sbin/sshd -D -e"]
