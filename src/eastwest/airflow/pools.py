"""One Airflow pool per western hub, sized to the compute slots the hub declares.

Each DAG's ``compute_<hub>`` task runs in pool ``eastwest_<hub>``, so Airflow never starts more
jobs on a hub than it declares, whatever the hub itself reports. A task whose pool does not exist
is never scheduled, so create the pools once per deployment, and again after a hub's
``eastwest_slots`` changes::

    python -m eastwest.airflow.pools          # airflow pools set eastwest_<hub> <slots> … for every hub

It runs the ``airflow`` command next to this Python, against the deployment's metadata DB.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eastwest.settings import get_settings, pool_name


def hub_slots(connections: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, int]:
    """``{pool name: slots}`` for every configured hub, from its connection's extras (or ``connections``)."""
    from eastwest.hub.placement import HubProfile

    sizes = {}
    for hub in get_settings().hubs:
        if connections is not None:
            extras = dict(connections.get(hub, {}).get("extra") or {})
        else:
            from airflow.sdk import BaseHook

            extras = BaseHook.get_connection(hub).extra_dejson
        sizes[pool_name(hub)] = HubProfile.from_extras(hub, extras).slots
    return sizes


def airflow_command() -> str:
    beside = Path(sys.executable).with_name("airflow")
    return str(beside) if beside.exists() else (shutil.which("airflow") or "airflow")


def ensure(sizes: Mapping[str, int], env: Mapping[str, str] | None = None) -> None:
    """Create or resize each pool (``airflow pools set`` is idempotent)."""
    for name, slots in sizes.items():
        hub = name.removeprefix("eastwest_")
        result = subprocess.run(
            [airflow_command(), "pools", "set", name, str(slots), f"compute jobs on western hub {hub}"],
            env=dict(env) if env is not None else None, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"airflow pools set {name} failed:\n{(result.stdout + result.stderr)[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eastwest.airflow.pools", description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    sizes = hub_slots()
    ensure(sizes)
    for name, slots in sizes.items():
        print(f"pool {name}: {slots} slot{'s' * (slots != 1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
