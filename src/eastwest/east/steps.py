"""The steps of an east → west → east run, as plain functions of a run context and a plan.

Tasks in :mod:`eastwest.airflow.dag` are thin wrappers around these functions, so every step is
testable without a scheduler. Each step is idempotent for its plan: files are written under a
temporary name and renamed into place, the warehouse partition is replaced in one transaction.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from eastwest.config import Input, ModelTarget, Workload
from eastwest.east import sources
from eastwest.east.plan import Plan
from eastwest.settings import Project, Settings, get_settings
from eastwest.west import wire

log = logging.getLogger(__name__)


class ValidationFailed(Exception):
    """The result broke its expectation suite; it was quarantined and nothing was published."""


class InputChanged(Exception):
    """An input's schema differs from the one last published; nothing was published."""


@dataclass(frozen=True)
class RunContext:
    """What every step of a DAG's runs shares: the workload, the project's files and the settings."""

    dag_id: str
    workload: Workload
    project: Project
    settings: Settings

    @classmethod
    def create(cls, dag_id: str, workload: Workload, project: Project) -> RunContext:
        return cls(dag_id=dag_id, workload=workload, project=project, settings=get_settings(project))

    @property
    def suite(self) -> Path:
        return self.project.suites_dir / str(self.workload.suite)

    # -- the run's files ---------------------------------------------------------------------------

    def staging_dir(self, plan: Plan) -> Path:
        return self.settings.staging_dir / plan.run_key

    def store(self, plan: Plan) -> wire.ChunkStore:
        """The run's east-side chunk store (inputs extracted here, results fetched here)."""
        return wire.ChunkStore(self.staging_dir(plan) / "chunks")

    def manifest_path(self, plan: Plan, name: str) -> Path:
        return self.staging_dir(plan) / f"{name}.dataset.json"

    def report_dir(self, plan: Plan) -> Path:
        return self.settings.reports_dir / plan.run_key

    def quarantine_dir(self, plan: Plan) -> Path:
        return self.settings.quarantine_dir / plan.run_key


# -- east: wait for the data, extract ------------------------------------------------------------------


def missing_data(ctx: RunContext, plan: Plan) -> list[str]:
    """What the plan's inputs still lack (one sentence per input and day); empty when all are complete.

    A source that cannot be asked right now (the database is down, a table not created yet, an
    unreadable folder) counts as not complete, with the reason; a declaration that cannot work
    (:class:`sources.InputError`) raises.
    """
    from adbc_driver_manager import Error as DatabaseError

    lacking: list[str] = []
    for item in ctx.workload.inputs:
        try:
            lacking += sources.missing(item, plan, ctx.project, ctx.settings, ctx.workload.tz)
        except (OSError, DatabaseError) as exc:
            log.warning("could not check input %s: %s", item.name, exc)
            lacking.append(f"input {item.name}: could not be checked ({type(exc).__name__}: {str(exc)[:300]})")
    return lacking


def extract_input(ctx: RunContext, plan: Plan, item: Input) -> dict[str, Any]:
    """Stream one input into the run's chunk store; refuse it if its schema changed since the last publish."""
    from eastwest.east import warehouse
    from eastwest.east.connections import database_url

    started = time.monotonic()
    batches = sources.batches(item, plan, ctx.project, ctx.settings, ctx.workload.tz)
    first = next(batches, None)
    if first is None:  # final: the run waited for the data before extracting (missing_data)
        raise sources.MissingData(
            f"input {item.name} has no rows for {plan.describe()}; nothing to compute "
            f"({'load the day first, then clear the run' if plan.interval else 'the source is empty'})"
        )
    text = sources.schema_json(first.schema)
    recorded = warehouse.recorded_schema(database_url(ctx.workload.target.conn_id, ctx.settings), ctx.dag_id, item.name)
    if recorded is not None and recorded != text:
        raise InputChanged(
            f"the schema of input {item.name} changed since it was last published: "
            f"{'; '.join(sources.schema_changes(recorded, text))}. Nothing was published. If the change is "
            f"intended, adapt the job {ctx.workload.job} and its suite, then accept the new schema with "
            f"`python -m eastwest.east.schemas accept {ctx.dag_id} {item.name} --conn-id {ctx.workload.target.conn_id}`"
        )

    def chained() -> Iterator[Any]:
        yield first
        for batch in batches:  # every batch in the first one's schema (SQLite infers types per query)
            if not batch.schema.equals(first.schema):
                try:
                    batch = batch.cast(first.schema)
                except (ValueError, TypeError, NotImplementedError) as exc:
                    raise sources.InputError(
                        f"input {item.name}: a later batch has columns {sources.schema_text(batch.schema)}, the "
                        f"first had {sources.schema_text(first.schema)} ({exc}); CAST the column in the query"
                    ) from None
            yield batch

    manifest = wire.write_chunks(chained(), first.schema, ctx.store(plan))
    seconds = time.monotonic() - started
    wire.save_dataset_manifest(ctx.manifest_path(plan, item.name), manifest)
    log.info(
        "extracted %s: %s rows, %.2f MB raw → %.2f MB zstd Arrow in %s chunks (%.1fx) in %.2fs (%.0f rows/s)",
        item.name,
        manifest.rows,
        manifest.raw_bytes / 1e6,
        manifest.bytes / 1e6,
        len(manifest.chunks),
        manifest.raw_bytes / max(manifest.bytes, 1),
        seconds,
        manifest.rows / max(seconds, 1e-9),
    )
    return {**manifest.summary(), "seconds": round(seconds, 3), "schema": text}


def model_versions(ctx: RunContext, plan: Plan) -> dict[str, str]:
    """``{input: "<model> version <sha256>"}`` for the run's model inputs, read from its staged chunks."""
    from eastwest.config import ModelInput

    found = {}
    for item in ctx.workload.inputs:
        path = ctx.manifest_path(plan, item.name)
        if not isinstance(item, ModelInput) or not path.exists():
            continue
        try:
            rows = [
                r
                for b in ctx.store(plan).batches(wire.load_dataset_manifest(path))
                for r in b.select(["version"]).to_pylist()
            ]
        except (OSError, ValueError, KeyError) as exc:
            found[item.name] = f"{item.model} (its staged copy cannot be read: {exc})"
            continue
        found[item.name] = f"{item.model} version {rows[0]['version']}" if rows else f"{item.model}: none (baseline)"
    return found


def extract(ctx: RunContext, plan: Plan) -> dict[str, Any]:
    """Stream every input into compressed Arrow chunks, batch by batch (one batch in memory)."""
    inputs = {item.name: extract_input(ctx, plan, item) for item in ctx.workload.inputs}
    (ctx.staging_dir(plan) / "schemas.json").write_text(json.dumps({n: m["schema"] for n, m in inputs.items()}))
    return {
        "inputs": {n: {k: v for k, v in m.items() if k != "schema"} for n, m in inputs.items()},
        "rows": sum(m["rows"] for m in inputs.values()),
        "raw_bytes": sum(m["raw_bytes"] for m in inputs.values()),
        "bytes": sum(m["bytes"] for m in inputs.values()),
        "seconds": round(sum(m["seconds"] for m in inputs.values()), 3),
    }


# -- hub: ship, fetch ---------------------------------------------------------------------------------


def ship(ctx: RunContext, plan: Plan) -> dict[str, Any]:
    """Send the job bundle and the inputs' chunks to the run's hub; the hub verifies each before naming it."""
    from eastwest.east import placing

    with placing.on_hub(ctx, plan, placing.SHIP) as hub:
        return ship_to(ctx, plan, hub)


def ship_to(ctx: RunContext, plan: Plan, hub: str) -> dict[str, Any]:
    """Ship the run's bundle and inputs to ``hub`` (only the chunks it lacks travel) and record it."""
    from eastwest.east import placing
    from eastwest.hub.transfer import TransferEngine

    with TransferEngine(hub) as engine:  # one connection for the bundle and every input
        digest = engine.push_bundle(plan.run_key, ctx.project.jobs_dir, ctx.store(plan))
        transfers = []
        for item in ctx.workload.inputs:
            manifest = wire.load_dataset_manifest(ctx.manifest_path(plan, item.name))
            transfers.append(engine.push(plan.run_key, item.name, ctx.store(plan), manifest).to_dict())
    total = _combine(transfers)
    placing.mark(ctx, plan, "received", hub, total["wire_bytes"])
    placing.mark(ctx, plan, "shipped", hub, digest)
    return {**total, "hub": hub, "bundle": digest, "transfers": transfers}


def _combine(transfers: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rows", "raw_bytes", "dataset_bytes", "wire_bytes", "seconds", "send_seconds", "chunks", "chunks_skipped")
    total: dict[str, Any] = {k: sum(t[k] for t in transfers) for k in keys}
    total["chunks_resent"] = sum(t["chunks_resent"] for t in transfers)
    total["streams"] = max((t["streams"] for t in transfers), default=0)
    seconds = total["seconds"] or 0
    total["wire_mb_per_s"] = round(total["wire_bytes"] / 1e6 / seconds, 2) if seconds else 0.0
    total["logical_mb_per_s"] = round(total["raw_bytes"] / 1e6 / seconds, 2) if seconds else 0.0
    total["seconds"] = round(seconds, 3)
    return total


def fetch(ctx: RunContext, plan: Plan) -> dict[str, Any]:
    """Bring the job's result back east, verified chunk by chunk and as a whole.

    After a failover at this step the result is on a hub that failed: the run's data is shipped
    to the new hub and the job runs there first (holding this worker slot).
    """
    from eastwest.east import placing
    from eastwest.hub.hook import WestHubHook
    from eastwest.hub.transfer import TransferEngine

    with placing.on_hub(ctx, plan, placing.FETCH) as hub:
        record = placing.load(ctx, plan) or {"shipped": {}, "computed": {plan.hub: True}}
        if hub not in record["computed"]:
            _compute_here(ctx, plan, hub, record)
        with TransferEngine(hub) as engine:
            manifest, metrics = engine.pull(plan.run_key, plan.job, ctx.store(plan))
        wire.save_dataset_manifest(ctx.manifest_path(plan, plan.job), manifest)
        placing.mark(ctx, plan, "fetched", hub, metrics.wire_bytes)
        hook = WestHubHook(hub)
        job = hook.job_metrics(plan.run_key, plan.job)
        usage = hook.job_usage(plan.run_key, plan.job)
    return {
        **metrics.to_dict(),
        "hub": hub,
        "compute_seconds": job.get("compute_seconds"),
        "core_seconds": usage.get("core_seconds"),
        "job_seconds": usage.get("seconds"),
        "queued_seconds": usage.get("queued_seconds"),
    }


def _compute_here(ctx: RunContext, plan: Plan, hub: str, record: dict[str, Any]) -> None:
    from eastwest.east import placing
    from eastwest.hub import jobs
    from eastwest.hub.hook import HubError

    log.warning("hub %s does not hold this run's result (failover): running job %s there first", hub, plan.job)
    bundle = record["shipped"].get(hub) or ship_to(ctx, plan, hub)["bundle"]
    jobs.submit(hub, plan.run_key, plan.job, bundle, dict(plan.params))
    placing.release(ctx, plan)
    event = jobs.watch(
        jobs.JobWatch(hub, plan.run_key, plan.job), deadline=None, poll_interval=2.0, lost_after=120.0, emit=log.info
    )
    if event["status"] != "succeeded":
        if jobs.hub_failed(event):
            raise HubError(f"hub {hub!r}: job {plan.job} did not finish there: {event.get('message')}")
        raise RuntimeError(f"job {plan.job} failed on hub {hub}: {event.get('message')}")
    placing.mark(ctx, plan, "computed", hub, True)


# -- east: validate, publish ---------------------------------------------------------------------------


def read_result(ctx: RunContext, plan: Plan) -> tuple[wire.DatasetManifest, Any]:
    import pyarrow as pa

    manifest = wire.load_dataset_manifest(ctx.manifest_path(plan, plan.job))
    batches = list(ctx.store(plan).batches(manifest))
    if not batches:
        raise wire.VerificationError(f"{plan.job} returned no data at all (not even a schema)")
    table = pa.Table.from_batches(batches)
    if table.num_rows != manifest.rows:
        raise wire.VerificationError(f"{plan.job} has {table.num_rows} rows, its manifest says {manifest.rows}")
    return manifest, table


def validate(ctx: RunContext, plan: Plan) -> dict[str, Any]:
    """Run the workload's expectation suite; on failure quarantine the result and raise ``ValidationFailed``."""
    from eastwest.east import validation

    out_dir = ctx.report_dir(plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = out_dir / "validation.json"
    record.unlink(missing_ok=True)  # publish needs a pass for exactly this result
    manifest, table = read_result(ctx, plan)
    from eastwest.east.previews import preview

    (out_dir / "preview.json").write_text(json.dumps(preview(table), default=str))  # for the report, pass or fail
    outcome = validation.validate(table.to_pandas(), ctx.suite)
    if outcome.success:
        validated = {"result_sha256": manifest.sha256, "gx": outcome.result}
        tmp = wire.temp_path(record)
        tmp.write_text(json.dumps(validated, indent=1, default=str))
        tmp.replace(record)
        log.info("validation %s", outcome.describe())
        return {"success": True, "evaluated": outcome.evaluated, "failed": [], "report": str(record)}

    quarantine = ctx.quarantine_dir(plan)
    if quarantine.exists():
        shutil.rmtree(quarantine)
    quarantine.mkdir(parents=True)
    with open(quarantine / f"{plan.job}{wire.SUFFIX}", "wb") as f:  # one file a person can open
        wire.write_stream(table.to_batches(), table.schema, f)
    (quarantine / f"{plan.job}.dataset.json").write_text(manifest.to_json())
    (quarantine / "validation.json").write_text(json.dumps(outcome.result, indent=1, default=str))
    (quarantine / "plan.json").write_text(json.dumps(plan.to_dict(), indent=1))
    raise ValidationFailed(
        f"validation of {plan.job} for {plan.describe()} {outcome.describe()}. Nothing was published; the "
        f"result and the Great Expectations report are in {quarantine}"
    )


def publish(ctx: RunContext, plan: Plan) -> dict[str, Any]:
    """Replace the plan's partition of the target with the validated result, in one transaction."""
    from eastwest.east import warehouse
    from eastwest.east.connections import database_url, redact

    record = ctx.report_dir(plan) / "validation.json"
    validated = json.loads(record.read_text()).get("result_sha256") if record.exists() else None
    manifest, table = read_result(ctx, plan)
    if validated != manifest.sha256:
        raise RuntimeError(f"refusing to publish {plan.run_key}: this result has not passed validation")
    schemas_file = ctx.staging_dir(plan) / "schemas.json"
    schemas = json.loads(schemas_file.read_text()) if schemas_file.exists() else {}
    partition = warehouse.Partition(
        scope=plan.scope,
        start_day=date.fromisoformat(plan.start_day) if plan.start_day else None,
        end_day=date.fromisoformat(plan.end_day) if plan.end_day else None,
    )
    url = database_url(ctx.workload.target.conn_id, ctx.settings)
    started = time.monotonic()
    from eastwest.east import placing

    if isinstance(ctx.workload.target, ModelTarget):
        return _register(ctx, plan, url, table, schemas)
    outcome = warehouse.publish(
        url, ctx.workload.target, partition, table, placing.current(ctx, plan), schema_records=schemas,
        dag_id=ctx.dag_id,
    )  # fmt: skip
    seconds = time.monotonic() - started
    log.info(
        "published %s rows to %s in %s in %.2fs: %s",
        table.num_rows,
        ctx.workload.target.table,
        redact(url),
        seconds,
        outcome.describe(),
    )
    return {**asdict(outcome), "message": outcome.describe(), "seconds": round(seconds, 3)}


def _register(ctx: RunContext, plan: Plan, url: str, table: Any, schemas: dict[str, str]) -> dict[str, Any]:
    """Publish a training result: register the model version in the registry and gate it."""
    from eastwest.east import models, placing, warehouse

    assert isinstance(ctx.workload.target, ModelTarget)
    hub = placing.current(ctx, plan)
    record = placing.load(ctx, plan) or {}
    started = time.monotonic()
    try:
        done = models.register(
            url, table, name=ctx.workload.target.model, hub=hub, dag_id=ctx.dag_id, run_key=plan.run_key,
            bundle=str(record.get("shipped", {}).get(hub, "")), schema_records=schemas,
        )  # fmt: skip
    except models.RegistryError as exc:
        raise warehouse.PublishError(str(exc)) from exc
    log.info("%s (champion now: %s)", done.describe(), done.champion or "none")
    return {
        **asdict(done), "message": done.describe(), "seconds": round(time.monotonic() - started, 3),
        "rows_after": 1, "rows_before": 0 if done.changed else 1,
    }  # fmt: skip


def cleanup(ctx: RunContext, plan: Plan) -> dict[str, Any]:
    """Remove the run's scratch files on every hub it used and its local staging files (not quarantine).

    A hub that cannot be reached keeps its scratch until a later run's cleanup there; that is
    logged, and does not fail the run.
    """
    from eastwest.east import placing
    from eastwest.hub.hook import HubError, WestHubHook

    placing.release(ctx, plan)
    record = placing.load(ctx, plan) or {}
    used = list(dict.fromkeys([*record.get("shipped", {}), *([record["hub"]] if "hub" in record else [])]))
    remote = {}
    for hub in used or ([plan.hub] if plan.hub != "auto" else []):
        try:
            WestHubHook(hub).cleanup(plan.run_key)
            remote[hub] = "removed"
        except HubError as exc:
            log.warning("could not clean up run %s on hub %s: %s", plan.run_key, hub, exc)
            remote[hub] = f"left: {exc}"[:300]
    local = ctx.staging_dir(plan)
    if local.exists():
        shutil.rmtree(local)
    return {"remote": remote, "local": str(local)}
