"""The model registry in the east warehouse: register a trained version, gate it, serve the champion.

A training workload (:class:`eastwest.config.ModelTarget`) publishes its job's one-row result
here instead of into a table. :func:`register` stores the version (the SHA-256 of its ONNX bytes)
as a ``candidate`` and :func:`gate` decides, from the backtest the job measured on the hub,
whether it becomes the ``champion`` (the previous one is ``retired``) or stays a candidate with
the reason. Both happen in one transaction, so a failure leaves the registry as it was, and a
rerun of the same version changes nothing.

An inference workload (:class:`eastwest.config.ModelInput`) reads the champion with
:func:`model_table`: one row (``name``, ``version``, ``onnx``) that travels to the hub as a chunk
like any data: content-addressed (a hub that holds it already is not sent it again) and verified
there before the job loads it; the job checks the bytes against ``version`` once more.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eastwest.config import MODELS_TABLE
from eastwest.east import arrowdb, sql

CHAMPION, CANDIDATE, RETIRED = "champion", "candidate", "retired"
#: The registry's columns taken from the training job's result (the rest are the run's).
RESULT_COLUMNS = (
    "name", "version", "onnx", "train_start", "train_end", "holdout_start", "holdout_end",
    "mae", "mape", "baseline_mae", "baseline_mape",
)  # fmt: skip


class RegistryError(ValueError):
    """A training result that cannot be registered, or a model that is not there; nothing changed."""


class NoChampion(RegistryError):
    """A model with no champion version yet: run its training first."""


@dataclass(frozen=True)
class Registered:
    """What :func:`register` did with one version."""

    name: str
    version: str
    status: str
    reason: str
    champion: str | None  # the champion's version afterwards
    changed: bool  # False: this version was registered already (a rerun)

    def describe(self) -> str:
        if not self.changed:
            return (
                f"model {self.name} version {self.version[:12]} was registered already ({self.status}); nothing changed"
            )
        return f"model {self.name} version {self.version[:12]} registered as {self.status}: {self.reason}"


def model_schema() -> Any:
    """The table a :class:`~eastwest.config.ModelInput` gives its job."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("version", pa.string(), nullable=False),
            pa.field("onnx", pa.binary(), nullable=False),
        ]
    )


def _blob(url: str) -> str:
    return "BYTEA" if arrowdb.dialect_of(url) == "postgresql" else "BLOB"


def ensure(conn: Any, url: str) -> None:
    cursor = conn.cursor()
    cursor.execute(sql.library("create_models.sql", blob=_blob(url)))
    cursor.close()


def _select(
    conn: Any, url: str, name: str, *, version: str = "", status: str = "", with_bytes: bool = False
) -> list[dict]:
    if arrowdb.columns_of(conn, MODELS_TABLE) is None:
        return []
    query = sql.library("select_models.sql", version=bool(version), status=bool(status), with_bytes=with_bytes)
    binds = {"name": name, **({"version": version} if version else {}), **({"status": status} if status else {})}
    cursor = arrowdb.execute(conn, url, query, binds)
    try:
        return list(cursor.fetch_arrow_table().to_pylist())
    finally:
        cursor.close()


def versions(url: str, name: str) -> list[dict[str, Any]]:
    """A model's registered versions, newest first, without their bytes."""
    with arrowdb.connect(url) as conn:
        return _select(conn, url, name)


def champion(url: str, name: str, *, with_bytes: bool = False) -> dict[str, Any] | None:
    """The model's champion version (with its ONNX bytes if asked), or ``None``."""
    with arrowdb.connect(url) as conn:
        found = _select(conn, url, name, status=CHAMPION, with_bytes=with_bytes)
    return found[0] if found else None


def model_table(url: str, name: str, *, required: bool = True) -> Any:
    """The champion as the one-row table a job receives; empty when there is none and not ``required``."""
    import hashlib

    import pyarrow as pa

    found = champion(url, name, with_bytes=True)
    if found is None:
        if required:
            raise NoChampion(
                f"model {name} has no champion yet: run its training DAG first (a trained version becomes "
                f"champion when it beats the seasonal-naive baseline); `SELECT name, version, status, reason "
                f"FROM models WHERE name = '{name}'` shows why earlier versions were not promoted"
            )
        return model_schema().empty_table()
    onnx = bytes(found["onnx"])
    if hashlib.sha256(onnx).hexdigest() != found["version"]:
        raise RegistryError(
            f"model {name} version {found['version']}: the registry's bytes hash to "
            f"{hashlib.sha256(onnx).hexdigest()}, not to the version; refusing to ship it. Retrain the model"
        )
    return pa.Table.from_pylist([{"name": name, "version": found["version"], "onnx": onnx}], schema=model_schema())


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def gate(candidate: dict[str, Any], current: dict[str, Any] | None) -> tuple[str, str]:
    """Whether ``candidate`` becomes champion over ``current`` (``None``: no champion yet), and why.

    A version is promoted only if its backtest MAPE is strictly lower than the seasonal-naive
    baseline's and than the champion's. The champion's MAPE is the one the training job measured
    on the same held-out days (``champion_mape``) when it could score the champion; otherwise the
    champion's own recorded backtest, and the reason says the days differ.
    """
    mape, baseline = _number(candidate.get("mape")), _number(candidate.get("baseline_mape"))
    if mape is None or baseline is None:
        return CANDIDATE, "its backtest has no finite MAPE for the model or the baseline"
    if current is not None and current["version"] == candidate["version"]:
        return CHAMPION, "already the champion"
    if not mape < baseline:
        return (
            CANDIDATE,
            f"does not beat the seasonal-naive baseline on the held-out days (MAPE {mape:.4f} vs {baseline:.4f})",
        )
    versus = f"beats seasonal-naive (MAPE {mape:.4f} vs {baseline:.4f})"
    if current is None:
        return CHAMPION, f"first champion: {versus}"
    same_days = (
        candidate.get("champion_version") == current["version"] and _number(candidate.get("champion_mape")) is not None
    )
    theirs = _number(candidate.get("champion_mape")) if same_days else _number(current.get("mape"))
    where = "on the same held-out days" if same_days else "by its own backtest (other held-out days)"
    if theirs is not None and not mape < theirs:
        return CANDIDATE, f"does not beat champion {current['version'][:12]} {where} (MAPE {mape:.4f} vs {theirs:.4f})"
    shown = "n/a" if theirs is None else f"{theirs:.4f}"
    return CHAMPION, f"{versus} and champion {current['version'][:12]} {where} (MAPE {mape:.4f} vs {shown})"


def _result_row(table: Any, name: str) -> dict[str, Any]:
    import hashlib

    missing = [c for c in RESULT_COLUMNS if c not in table.schema.names]
    if missing:
        raise RegistryError(f"the training result lacks column(s) {', '.join(missing)}; the job must return them")
    if table.num_rows != 1:
        raise RegistryError(f"a training result registers one model version: it has {table.num_rows} rows")
    row = table.to_pylist()[0]
    if row["name"] != name:
        raise RegistryError(f"the training result is model {row['name']!r}, but the workload's ModelTarget is {name!r}")
    onnx = row["onnx"]
    if not isinstance(onnx, bytes) or hashlib.sha256(onnx).hexdigest() != row["version"]:
        raise RegistryError(f"model {name} version {row['version']}: the returned bytes do not hash to the version")
    return row


def register(
    url: str,
    table: Any,
    *,
    name: str,
    hub: str,
    dag_id: str,
    run_key: str,
    bundle: str,
    schema_records: dict[str, str] | None = None,
) -> Registered:
    """Register the one-row training result ``table`` and gate it, in one transaction."""
    import pyarrow as pa

    from eastwest.east import warehouse

    row = _result_row(table, name)
    if schema_records:
        warehouse.ensure_schema_table(url)
    with arrowdb.connect(url, lock=MODELS_TABLE) as conn:  # one registration at a time: one champion
        ensure(conn, url)
        known = _select(conn, url, name, version=row["version"])
        if known:
            conn.rollback()
            holder = _select(conn, url, name, status=CHAMPION)
            return Registered(
                name, row["version"], known[0]["status"], known[0]["reason"],
                holder[0]["version"] if holder else None, changed=False,
            )  # fmt: skip
        current_rows = _select(conn, url, name, status=CHAMPION)
        current = current_rows[0] if current_rows else None
        status, reason = gate(row, current)
        metrics = {k: v for k, v in row.items() if k != "onnx"}
        record = {
            "name": name, "version": row["version"], "status": status, "reason": reason,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "hub": hub, "dag_id": dag_id,
            "run_key": run_key, "bundle": bundle,
            **{k: str(row[k]) for k in ("train_start", "train_end", "holdout_start", "holdout_end")},
            **{k: float(row[k]) for k in ("mae", "mape", "baseline_mae", "baseline_mape")},
            "champion_version": row.get("champion_version"), "champion_mape": _number(row.get("champion_mape")),
            "metrics": json.dumps(metrics, default=str, sort_keys=True), "onnx": row["onnx"],
        }  # fmt: skip
        columns = arrowdb.columns_of(conn, MODELS_TABLE) or {}
        text = {"champion_version"} | {k for k, v in record.items() if isinstance(v, str)}
        fields = [
            pa.field(c, pa.binary() if c == "onnx" else pa.string() if c in text else pa.float64()) for c in columns
        ]
        arrowdb.ingest(conn, MODELS_TABLE, pa.Table.from_pylist([record], schema=pa.schema(fields)))
        if status == CHAMPION and current is not None:
            arrowdb.execute(
                conn, url, sql.library("update_model_status.sql"),
                {"status": RETIRED, "reason": f"replaced by {row['version'][:12]}", "name": name, "version": current["version"]},
            ).close()  # fmt: skip
        if schema_records:
            warehouse.record_schemas(conn, url, dag_id, schema_records)
        conn.commit()
    return Registered(
        name, row["version"], status, reason, row["version"] if status == CHAMPION else (current or {}).get("version"),
        changed=True,
    )  # fmt: skip
