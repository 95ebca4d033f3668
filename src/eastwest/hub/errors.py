"""What a hub operation raises: kept apart from the hook so that modules a DAG file imports (the
operator, the trigger, job watching) can catch hub failures without loading SSH (paramiko and its
cryptography take about half a second to import, more than a DAG file may spend)."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException


class HubError(AirflowException):
    """A hub is unreachable, misconfigured, or refused an operation."""


class HostKeyMismatch(HubError):
    """The hub offered another host key than the pinned one: never retried."""


class HubDiskFull(HubError):
    """The hub's disk is full: nothing more can be stored there until space is freed."""
