"""Deterministic east-side production orders: what each machine made, and when, on a local day.

Every enterprise of the park drops its day's production orders as one CSV file into a landing
folder, ``<data_dir>/landing/orders/<YYYY-MM-DD>/<enterprise_id>.csv``. Each machine of
:func:`eastwest_dev.telemetry.machine_ids` works 2–4 consecutive, non-overlapping orders between
08:00 and 20:00 local time (Asia/Shanghai), each 1–5 hours long, with a short changeover between
them. An order names one product from its enterprise's small catalogue and the units produced,
roughly proportional to its duration. Columns:

``order_id``
    unique, ``O<YYYYMMDD>-<machine_id>-<n>``, e.g. ``O20261124-E0001-M01-1``
``enterprise_id``, ``machine_id``
    as in the telemetry (``E0001``, ``E0001-M01``)
``product``
    e.g. ``P-gear``
``units``
    a positive integer
``start_time``, ``end_time``
    local wall-clock time, ``YYYY-MM-DD HH:MM:SS``; the end is exclusive

The same (day, machines, seed) always gives the same rows and the same bytes, and a machine's
orders do not depend on how many machines the park has. ``bad_row=True`` adds one row whose
``units`` does not parse, to exercise the reader's and the validation's error paths.

    python -m eastwest_dev.orders --date 2026-11-24 --machines 700 --data-dir .local/data
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from eastwest_dev.telemetry import machine_ids

SEED = 20260101
#: Keeps the orders' random streams apart from the telemetry's, which share the seed.
_STREAM = 0x0D
#: Products of the park and the units a machine makes of each per hour.
CATALOGUE = {"P-bracket": 120.0, "P-gear": 60.0, "P-housing": 20.0, "P-shaft": 45.0, "P-valve": 30.0}
COLUMNS = ("order_id", "enterprise_id", "machine_id", "product", "units", "start_time", "end_time")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: The production window, in local minutes after midnight: 08:00 to 20:00.
WINDOW = (8 * 60, 20 * 60)
STEP = 15  # orders start and end on quarter hours
MIN_ORDER, MAX_ORDER, MAX_CHANGEOVER = 60, 300, 30


def schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("order_id", pa.string(), nullable=False),
            pa.field("enterprise_id", pa.string(), nullable=False),
            pa.field("machine_id", pa.string(), nullable=False),
            pa.field("product", pa.string(), nullable=False),
            pa.field("units", pa.int64(), nullable=False),
            pa.field("start_time", pa.string(), nullable=False),
            pa.field("end_time", pa.string(), nullable=False),
        ]
    )


def enterprise_products(enterprise_id: str, *, seed: int = SEED) -> list[str]:
    """The 2–3 products an enterprise makes, the same every day."""
    import numpy as np

    rng = np.random.default_rng([_STREAM, seed, int(enterprise_id[1:])])
    names = sorted(CATALOGUE)
    picked = rng.choice(len(names), size=int(rng.integers(2, 4)), replace=False)
    return [names[i] for i in sorted(picked)]


def _machine_orders(day: date, index: int, enterprise_id: str, machine_id: str, seed: int) -> list[tuple]:
    """One machine's orders on ``day``: consecutive quarter-hour slots inside :data:`WINDOW`."""
    import numpy as np

    rng = np.random.default_rng([_STREAM, seed, day.toordinal(), index])
    products = enterprise_products(enterprise_id, seed=seed)
    count = int(rng.integers(2, 5))
    midnight = datetime(day.year, day.month, day.day)
    cursor = WINDOW[0] + STEP * int(rng.integers(0, 5))  # first order starts 08:00–09:00
    rows = []
    for n in range(1, count + 1):
        # Leave room for the orders still to come, each at least MIN_ORDER plus a changeover.
        room = WINDOW[1] - cursor - (count - n) * (MIN_ORDER + MAX_CHANGEOVER)
        longest = min(MAX_ORDER, room) // STEP
        minutes = STEP * int(rng.integers(MIN_ORDER // STEP, longest + 1))
        product = products[int(rng.integers(0, len(products)))]
        rate = CATALOGUE[product] * rng.normal(1.0, 0.1)
        units = max(1, round(rate * minutes / 60))
        start, end = midnight + timedelta(minutes=cursor), midnight + timedelta(minutes=cursor + minutes)
        order_id = f"O{day:%Y%m%d}-{machine_id}-{n}"
        rows.append(
            (
                order_id,
                enterprise_id,
                machine_id,
                product,
                units,
                start.strftime(TIME_FORMAT),
                end.strftime(TIME_FORMAT),
            )
        )
        cursor += minutes + STEP * int(rng.integers(0, MAX_CHANGEOVER // STEP + 1))
    return rows


def generate_orders(day: date, machines: int, *, seed: int = SEED) -> Any:
    """Return a local day's production orders for the park's first ``machines`` machines as an Arrow table."""
    import pyarrow as pa

    rows = [
        row
        for index, (enterprise_id, machine_id) in enumerate(machine_ids(machines))
        for row in _machine_orders(day, index, enterprise_id, machine_id, seed)
    ]
    rows.sort(key=lambda r: (r[1], r[2], r[5]))
    return pa.Table.from_arrays([pa.array([r[i] for r in rows]) for i in range(len(COLUMNS))], schema=schema())


def _write_csv(path: Path, rows: list[list[Any]]) -> Path:
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    partial.replace(path)
    return path


def write_landing(day: date, machines: int, data_dir: Path, *, seed: int = SEED, bad_row: bool = False) -> list[Path]:
    """Write the day's orders as one CSV per enterprise under ``data_dir/landing/orders/YYYY-MM-DD/``.

    Each file is written under a temporary name and renamed, so a reader never sees half a file.
    With ``bad_row`` the first enterprise's file gets one more row whose ``units`` is ``twelve``.
    """
    table = generate_orders(day, machines, seed=seed)
    target_dir = Path(data_dir) / "landing" / "orders" / day.isoformat()
    target_dir.mkdir(parents=True, exist_ok=True)
    by_enterprise: dict[str, list[list[Any]]] = {}
    for row in table.to_pylist():
        by_enterprise.setdefault(row["enterprise_id"], []).append([row[c] for c in COLUMNS])
    paths = []
    for i, (enterprise_id, rows) in enumerate(sorted(by_enterprise.items())):
        if bad_row and i == 0:
            first = rows[0]
            rows = [*rows, [f"{first[0]}-bad", enterprise_id, first[2], first[3], "twelve", first[5], first[6]]]
        paths.append(_write_csv(target_dir / f"{enterprise_id}.csv", rows))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eastwest_dev.orders", description="Land a day of production orders.")
    parser.add_argument("--date", type=date.fromisoformat, required=True, help="local day, YYYY-MM-DD")
    parser.add_argument("--machines", type=int, default=700, help="machines in the park, as for the telemetry")
    parser.add_argument("--data-dir", type=Path, required=True, help="files go under DATA_DIR/landing/orders/")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--bad-row", action="store_true", help="add one row whose units do not parse")
    args = parser.parse_args(argv)
    if args.machines < 1:
        parser.error("--machines must be at least 1")
    paths = write_landing(args.date, args.machines, args.data_dir, seed=args.seed, bad_row=args.bad_row)
    print(f"landed {len(paths)} order files for {args.date} ({args.machines} machines) in {paths[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
