"""The steps of an east → west → east run, as plain functions of a :class:`Plan`.

Tasks in ``eastwest.dag_factory`` are thin wrappers around these functions, so every step is
testable without a scheduler. Each step is idempotent for its plan: files are written under a
temporary name and renamed into place, the warehouse partition is replaced in one transaction.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from eastwest.settings import JOBS, LOCAL_TZ, Settings, check_name, get_settings
from westnode import wire

log = logging.getLogger(__name__)

INPUT_NAME = "readings"
MAX_RANGE_DAYS = 31


class ValidationFailed(Exception):
    """The result broke its expectation suite; it was quarantined and nothing was published."""


@dataclass(frozen=True)
class Plan:
    """Everything a run needs to know, validated once and passed between tasks as a dict."""

    scope: str
    start: str  # naive UTC ISO timestamps bounding the source interval [start, end)
    end: str
    start_day: str  # local calendar days of the warehouse partition [start_day, end_day)
    end_day: str
    hub: str
    job: str
    run_key: str
    enterprise_ids: list[str] = field(default_factory=list)

    @property
    def job_params(self) -> dict[str, Any]:
        return {"tz": LOCAL_TZ, "enterprise_ids": self.enterprise_ids}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**data)


def _check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{kind} {value!r} is not one of: {', '.join(allowed)}")
    return value


def make_plan(
    *,
    scope: str,
    start_day: date,
    end_day: date,
    hub: str,
    job: str,
    enterprise_ids: list[str] | tuple[str, ...] = (),
    settings: Settings | None = None,
) -> Plan:
    """Validate a request and turn it into a plan; raises ``ValueError`` naming the bad field."""
    settings = settings or get_settings()
    check_name("scope", scope)
    _check_choice("hub", hub, settings.hubs)
    _check_choice("job", job, JOBS)
    if end_day <= start_day:
        raise ValueError(f"end day {end_day} must be after start day {start_day}")
    if (end_day - start_day).days > MAX_RANGE_DAYS:
        raise ValueError(f"a run covers at most {MAX_RANGE_DAYS} days; split {start_day}..{end_day}")
    ids = sorted({check_name("enterprise id", e) for e in enterprise_ids})
    tz = ZoneInfo(LOCAL_TZ)
    utc = ZoneInfo("UTC")

    def utc_bound(day: date) -> str:
        return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(utc).replace(tzinfo=None).isoformat()

    run_key = f"{scope}__{start_day:%Y%m%d}-{end_day:%Y%m%d}"
    return Plan(
        scope=scope,
        start=utc_bound(start_day),
        end=utc_bound(end_day),
        start_day=start_day.isoformat(),
        end_day=end_day.isoformat(),
        hub=hub,
        job=job,
        run_key=check_name("run key", run_key),
        enterprise_ids=ids,
    )


def nightly_plan(data_interval_start: datetime, data_interval_end: datetime, hub: str, job: str) -> Plan:
    """The plan of a scheduled run: the local days its data interval covers."""
    if data_interval_start is None or data_interval_end is None:
        raise ValueError(
            "this run has no data interval; trigger east_west_nightly with a logical date (the day after "
            "the day to process), or use east_west_analyst for ad-hoc ranges"
        )
    tz = ZoneInfo(LOCAL_TZ)
    return make_plan(
        scope="nightly",
        start_day=data_interval_start.astimezone(tz).date(),
        end_day=data_interval_end.astimezone(tz).date(),
        hub=hub,
        job=job,
    )


def analyst_plan(params: dict[str, Any]) -> Plan:
    """The plan of an analyst request; the scope is a digest of what was asked, so a repeat replaces it."""
    start_day = date.fromisoformat(str(params["start_date"]))
    end_raw = params.get("end_date") or params["start_date"]
    end_day = date.fromisoformat(str(end_raw)) + timedelta(days=1)
    enterprises = [e.strip() for e in str(params.get("enterprise_ids") or "").split(",") if e.strip()]
    request = {
        "start": start_day.isoformat(),
        "end": end_day.isoformat(),
        "job": params["job"],
        "ids": sorted(enterprises),
    }
    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]
    return make_plan(
        scope=f"analyst-{key}",
        start_day=start_day,
        end_day=end_day,
        hub=str(params["hub"]),
        job=str(params["job"]),
        enterprise_ids=enterprises,
    )


# -- local files ------------------------------------------------------------------------------------


def staging_dir(plan: Plan, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).staging_dir / plan.run_key


def local_store(plan: Plan, settings: Settings | None = None) -> wire.ChunkStore:
    """The run's east-side chunk store (inputs extracted here, results fetched here)."""
    return wire.ChunkStore(staging_dir(plan, settings) / "chunks")


def manifest_path(plan: Plan, name: str, settings: Settings | None = None) -> Path:
    return staging_dir(plan, settings) / f"{name}.dataset.json"


def report_dir(plan: Plan, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).reports_dir / plan.run_key


# -- steps ------------------------------------------------------------------------------------------


def extract(plan: Plan, settings: Settings | None = None) -> dict[str, Any]:
    """Stream the plan's interval from the east source into compressed Arrow chunks, batch by batch."""
    from eastwest import source
    from eastwest.telemetry import schema

    settings = settings or get_settings()
    started = time.monotonic()
    batches = source.extract_batches(
        settings.source_url,
        datetime.fromisoformat(plan.start),
        datetime.fromisoformat(plan.end),
        plan.enterprise_ids,
    )
    manifest = wire.write_chunks(batches, schema(), local_store(plan, settings))
    seconds = time.monotonic() - started
    if manifest.rows == 0:
        raise ValueError(
            f"the east source has no readings between {plan.start} and {plan.end} UTC "
            f"({plan.start_day} local); load the day first (python -m eastwest.telemetry --date {plan.start_day})"
        )
    wire.save_dataset_manifest(manifest_path(plan, INPUT_NAME, settings), manifest)
    log.info(
        "extracted %s rows from %s: %.2f MB raw → %.2f MB zstd Arrow in %s chunks (%.1fx) in %.2fs",
        manifest.rows,
        source.redact(settings.source_url),
        manifest.raw_bytes / 1e6,
        manifest.bytes / 1e6,
        len(manifest.chunks),
        manifest.raw_bytes / max(manifest.bytes, 1),
        seconds,
    )
    return {**manifest.summary(), "seconds": round(seconds, 3)}


def ship(plan: Plan, settings: Settings | None = None) -> dict[str, Any]:
    """Send the extracted chunks the hub lacks; the hub verifies the dataset before naming it."""
    from eastwest.transfer import TransferEngine

    manifest = wire.load_dataset_manifest(manifest_path(plan, INPUT_NAME, settings))
    metrics = TransferEngine(plan.hub).push(plan.run_key, INPUT_NAME, local_store(plan, settings), manifest)
    return metrics.to_dict()


def fetch(plan: Plan, settings: Settings | None = None) -> dict[str, Any]:
    """Bring the job's result back east, verified chunk by chunk and as a whole."""
    from eastwest.hooks import WestHubHook
    from eastwest.transfer import TransferEngine

    manifest, metrics = TransferEngine(plan.hub).pull(plan.run_key, plan.job, local_store(plan, settings))
    wire.save_dataset_manifest(manifest_path(plan, plan.job, settings), manifest)
    job = WestHubHook(plan.hub).job_metrics(plan.run_key, plan.job)
    return {**metrics.to_dict(), "compute_seconds": job.get("compute_seconds")}


def _read_result(plan: Plan, settings: Settings | None = None) -> tuple[wire.DatasetManifest, Any]:
    import pyarrow as pa

    manifest = wire.load_dataset_manifest(manifest_path(plan, plan.job, settings))
    table = pa.Table.from_batches(list(local_store(plan, settings).batches(manifest)))
    if table.num_rows != manifest.rows:
        raise wire.VerificationError(f"{plan.job} has {table.num_rows} rows, its manifest says {manifest.rows}")
    return manifest, table


def validate(plan: Plan, settings: Settings | None = None) -> dict[str, Any]:
    """Run the job's expectation suite; on failure quarantine the result and raise ``ValidationFailed``."""
    from eastwest import validation

    settings = settings or get_settings()
    out_dir = report_dir(plan, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = out_dir / "validation.json"
    record.unlink(missing_ok=True)  # publish needs a pass for exactly this result
    manifest, table = _read_result(plan, settings)
    outcome = validation.validate(table.to_pandas(), validation.suite_path(plan.job))
    if outcome.success:
        validated = {"result_sha256": manifest.sha256, "gx": outcome.result}
        tmp = wire.temp_path(record)
        tmp.write_text(json.dumps(validated, indent=1, default=str))
        tmp.replace(record)
        log.info("validation %s", outcome.describe())
        return {"success": True, "evaluated": outcome.evaluated, "failed": [], "report": str(record)}

    quarantine = settings.quarantine_dir / plan.run_key
    if quarantine.exists():
        shutil.rmtree(quarantine)
    quarantine.mkdir(parents=True)
    with open(quarantine / f"{plan.job}{wire.SUFFIX}", "wb") as f:  # one file a person can open
        wire.write_stream(table.to_batches(), table.schema, f)
    (quarantine / f"{plan.job}.dataset.json").write_text(manifest.to_json())
    (quarantine / "validation.json").write_text(json.dumps(outcome.result, indent=1, default=str))
    (quarantine / "plan.json").write_text(json.dumps(plan.to_dict(), indent=1))
    raise ValidationFailed(
        f"validation of {plan.job} for {plan.start_day}..{plan.end_day} {outcome.describe()}. Nothing was "
        f"published; the result and the Great Expectations report are in {quarantine}"
    )


def publish(plan: Plan, settings: Settings | None = None) -> dict[str, Any]:
    """Replace the plan's warehouse partition with the validated result, in one transaction."""
    from eastwest import warehouse

    settings = settings or get_settings()
    record = report_dir(plan, settings) / "validation.json"
    validated = json.loads(record.read_text()).get("result_sha256") if record.exists() else None
    manifest, table = _read_result(plan, settings)
    if validated != manifest.sha256:
        raise RuntimeError(f"refusing to publish {plan.run_key}: this result has not passed validation")
    outcome = warehouse.publish(
        settings.warehouse_url,
        plan.scope,
        date.fromisoformat(plan.start_day),
        date.fromisoformat(plan.end_day),
        table.to_pylist(),
        plan.hub,
    )
    log.info("published to %s: %s", warehouse.sqlfiles.redact(settings.warehouse_url), outcome.describe())
    return {**asdict(outcome), "changed": outcome.changed, "message": outcome.describe()}


def cleanup(plan: Plan, settings: Settings | None = None) -> dict[str, Any]:
    """Remove the run's scratch files on the hub and its local staging files (not quarantine)."""
    from eastwest.hooks import WestHubHook

    WestHubHook(plan.hub).cleanup(plan.run_key)
    local = staging_dir(plan, settings)
    if local.exists():
        shutil.rmtree(local)
    return {"remote": "removed", "local": str(local)}


# -- report -----------------------------------------------------------------------------------------


def summarize(plan: Plan, steps: dict[str, dict[str, Any] | None], settings: Settings | None = None) -> dict[str, Any]:
    """Combine the steps' metrics into the run summary an analyst or the demo reads."""
    extract_m = steps.get("extract") or {}
    ship_m = steps.get("ship") or {}
    fetch_m = steps.get("fetch") or {}
    valid_m = steps.get("validate")
    publish_m = steps.get("publish")
    raw, wire_bytes = extract_m.get("raw_bytes", 0), extract_m.get("bytes", 0)
    if valid_m is None:
        quarantined = ((settings or get_settings()).quarantine_dir / plan.run_key / "validation.json").exists()
        verdict = "FAILED (quarantined, nothing published)" if quarantined else "not run or failed (nothing published)"
    else:
        verdict = f"passed ({valid_m['evaluated']} expectations)"
    return {
        "run_key": plan.run_key,
        "scope": plan.scope,
        "interval": f"{plan.start_day} .. {plan.end_day} (local {LOCAL_TZ}, end exclusive)",
        "hub": plan.hub,
        "job": plan.job,
        "rows_extracted": extract_m.get("rows"),
        "raw_mb": round(raw / 1e6, 2),
        "wire_mb": round(wire_bytes / 1e6, 2),
        "compression_ratio": round(raw / wire_bytes, 2) if wire_bytes else None,
        "transfer_mb_per_s": ship_m.get("wire_mb_per_s"),
        "transfer_logical_mb_per_s": ship_m.get("logical_mb_per_s"),
        "transfer_seconds": ship_m.get("seconds"),
        "transfer_streams": ship_m.get("streams"),
        "wire_mb_sent": round(ship_m.get("wire_bytes", 0) / 1e6, 2) if ship_m else None,
        "chunks_skipped": ship_m.get("chunks_skipped"),
        "chunks_resent": ship_m.get("chunks_resent"),
        "remote_compute_seconds": fetch_m.get("compute_seconds"),
        "result_rows": fetch_m.get("rows"),
        "validation": verdict,
        "rows_published": (publish_m or {}).get("rows_after"),
        "warehouse": (publish_m or {}).get("message", "nothing published"),
    }


def write_report(plan: Plan, summary: dict[str, Any], settings: Settings | None = None) -> Path:
    """Write ``report.json`` and a readable ``report.html`` for the run; return the HTML path."""
    out_dir = report_dir(plan, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(summary, indent=1))
    validation_file = out_dir / "validation.json"
    if not validation_file.exists():
        quarantined = (settings or get_settings()).quarantine_dir / plan.run_key / "validation.json"
        validation_file = quarantined if quarantined.exists() else validation_file
    checks = ""
    if validation_file.exists():
        result = json.loads(validation_file.read_text())
        result = result.get("gx", result)
        for item in result.get("results", []):
            config = item["expectation_config"]
            kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
            status = "pass" if item["success"] else "FAIL"
            unexpected = (item.get("result") or {}).get("unexpected_count", "")
            checks += (
                f"<tr class='{status}'><td>{status}</td><td>{html.escape(config['type'])}</td>"
                f"<td>{html.escape(json.dumps(kwargs))}</td><td>{unexpected}</td></tr>"
            )
    rows = "".join(
        f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(plan.run_key)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:left}}tr.FAIL{{background:#fdd}}tr.pass{{background:#efe}}</style></head><body>
<h1>East → west run {html.escape(plan.run_key)}</h1><table>{rows}</table>
<h2>Validation ({html.escape(validation_file.name)})</h2>
<table><tr><th>status</th><th>expectation</th><th>arguments</th><th>unexpected</th></tr>{checks}</table>
</body></html>"""
    target = out_dir / "report.html"
    target.write_text(page)
    return target
