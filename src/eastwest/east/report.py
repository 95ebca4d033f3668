"""A run's report: the steps' metrics combined into a summary, written as JSON and HTML."""

from __future__ import annotations

import html
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eastwest.east import placing
from eastwest.east.plan import Plan
from eastwest.east.steps import RunContext

log = logging.getLogger(__name__)

STEPS = ("extract", "place", "ship", "fetch", "validate", "publish")


def placement_summary(ctx: RunContext, plan: Plan) -> dict[str, Any]:
    """Where the run computed and why: the requested hub and policy, each decision with its table,
    and every failover (which hub failed, when, during what, and where the run went)."""
    record = placing.load(ctx, plan)
    if record is None:
        return {"hub": plan.hub if plan.hub != "auto" else None, "placement": "not placed (the run stopped before)"}
    decisions = record["decisions"]
    failovers = []
    for failure in record["failures"]:
        later = [d for d in decisions if d["at"] > datetime.fromisoformat(failure["at"]).timestamp() - 1]
        went = later[0]["hub"] if later and later[0]["hub"] != failure["hub"] else record["hub"]
        failovers.append(
            f"{failure['hub']} failed during {failure['stage']} at {failure['at']} ({failure['error'][:200]}); "
            f"the run went to {went}"
        )
    return {
        "hub": record["hub"],
        "hub_requested": record["requested"],
        "placement_policy": record["policy"] + (f" within {record['deadline_s']} s" if record["deadline_s"] else ""),
        "placement": decisions[-1]["reason"],
        "placement_table": "\n\n".join(f"[{d['stage']}] {d['reason']}\n" + _table(d) for d in decisions),
        "failovers": failovers or "none",
    }


def _table(decision: dict[str, Any]) -> str:
    from eastwest.hub.placement import Decision

    return Decision.from_dict({k: v for k, v in decision.items() if k != "stage"}).table()


def record_usage(ctx: RunContext, plan: Plan, summary: dict[str, Any], *, run_id: str) -> None:
    """Add the run's row to the warehouse's ``compute_usage`` (hub, core-seconds, bytes, cost) and
    its cost to ``summary``; a warehouse that cannot be reached is logged, not fatal."""
    from eastwest.east import warehouse
    from eastwest.east.connections import database_url

    if placing.load(ctx, plan) is None:
        return
    used = placing.usage(
        ctx,
        plan,
        compute_seconds=float(summary.get("job_seconds") or 0),
        core_seconds=float(summary.get("core_seconds") or 0),
    )
    summary["cost_yuan"] = used["cost_yuan"]
    summary["bytes_to_hubs"] = used["bytes_in"]
    row = {
        "dag_id": plan.dag_id,
        "run_id": run_id,
        "run_key": plan.run_key,
        "job": plan.job,
        "day": plan.start_day or "",
        "raw_bytes": int(summary.get("raw_bytes") or 0),
        "succeeded": int(summary.get("rows_published") is not None),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **used,
    }
    try:
        url = database_url(ctx.workload.target.conn_id, ctx.settings)
        warehouse.record_usage(url, row)
        placing.save_rates(ctx, warehouse.usage_rates(url, plan.job))  # what the next placement reads
    except Exception as exc:  # the report matters more than its accounting row
        log.warning("could not record compute usage of %s: %s", plan.run_key, exc)


def summarize(ctx: RunContext, plan: Plan, steps: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Combine the steps' metrics into the run summary an analyst or the demo reads."""
    extract_m = steps.get("extract") or {}
    ship_m = steps.get("ship") or {}
    fetch_m = steps.get("fetch") or {}
    valid_m = steps.get("validate")
    publish_m = steps.get("publish")
    raw, wire_bytes = extract_m.get("raw_bytes", 0), extract_m.get("bytes", 0)
    placed = placement_summary(ctx, plan)
    if valid_m is None:
        quarantined = (ctx.quarantine_dir(plan) / "validation.json").exists()
        verdict = "FAILED (quarantined, nothing published)" if quarantined else "not run or failed (nothing published)"
    else:
        verdict = f"passed ({valid_m['evaluated']} expectations)"
    summary: dict[str, Any] = {
        "dag_id": plan.dag_id,
        "run_key": plan.run_key,
        "scope": plan.scope,
    }
    if plan.interval:
        summary["interval"] = f"{plan.start_day} .. {plan.end_day} (local {ctx.workload.tz}, end exclusive)"
    summary.update(placed)
    summary.update(
        {
            "job": plan.job,
            "job_bundle": ship_m.get("bundle"),
            "params": plan.params,
            "inputs": {name: m.get("rows") for name, m in (extract_m.get("inputs") or {}).items()},
            "rows_extracted": extract_m.get("rows"),
            "extract_seconds": extract_m.get("seconds"),
            "raw_mb": round(raw / 1e6, 2),
            "raw_bytes": raw,
            "wire_mb": round(wire_bytes / 1e6, 2),
            "compression_ratio": round(raw / wire_bytes, 2) if wire_bytes else None,
            "transfer_mb_per_s": ship_m.get("wire_mb_per_s"),
            "transfer_logical_mb_per_s": ship_m.get("logical_mb_per_s"),
            "transfer_seconds": ship_m.get("seconds"),
            "transfer_streams": ship_m.get("streams"),
            "wire_mb_sent": round(ship_m.get("wire_bytes", 0) / 1e6, 2) if ship_m else None,
            "wire_mb_received": round(fetch_m.get("wire_bytes", 0) / 1e6, 2) if fetch_m else None,
            "chunks_skipped": ship_m.get("chunks_skipped"),
            "chunks_resent": ship_m.get("chunks_resent"),
            "remote_compute_seconds": fetch_m.get("compute_seconds"),
            "job_seconds": fetch_m.get("job_seconds"),
            "core_seconds": fetch_m.get("core_seconds"),
            "queued_seconds": fetch_m.get("queued_seconds"),
            "result_rows": fetch_m.get("rows"),
            "validation": verdict,
            "target": ctx.workload.target.table,
            "rows_published": (publish_m or {}).get("rows_after"),
            "publish_seconds": (publish_m or {}).get("seconds"),
            "warehouse": (publish_m or {}).get("message", "nothing published"),
        }
    )
    return summary


def write_report(ctx: RunContext, plan: Plan, summary: dict[str, Any]) -> Path:
    """Write ``report.json`` and a readable ``report.html`` for the run; return the HTML path."""
    out_dir = ctx.report_dir(plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "report.html"
    summary["report"] = str(target)
    (out_dir / "report.json").write_text(json.dumps(summary, indent=1))
    validation_file = out_dir / "validation.json"
    if not validation_file.exists():
        quarantined = ctx.quarantine_dir(plan) / "validation.json"
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

    def cell(value: Any) -> str:
        if isinstance(value, list):
            value = "\n".join(map(str, value))
        text = html.escape(str(value))
        return f"<pre>{text}</pre>" if "\n" in text else text

    rows = "".join(
        f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{cell(v)}</td></tr>" for k, v in summary.items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(plan.run_key)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:left}}tr.FAIL{{background:#fdd}}tr.pass{{background:#efe}}</style></head><body>
<h1>East → west run {html.escape(plan.run_key)}</h1><table>{rows}</table>
<h2>Validation ({html.escape(validation_file.name)})</h2>
<table><tr><th>status</th><th>expectation</th><th>arguments</th><th>unexpected</th></tr>{checks}</table>
</body></html>"""
    target.write_text(page)
    return target
