"""A run's report: the steps' metrics combined into a summary, written as JSON and HTML."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from eastwest.east.plan import Plan
from eastwest.east.steps import RunContext

STEPS = ("extract", "ship", "fetch", "validate", "publish")


def summarize(ctx: RunContext, plan: Plan, steps: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Combine the steps' metrics into the run summary an analyst or the demo reads."""
    extract_m = steps.get("extract") or {}
    ship_m = steps.get("ship") or {}
    fetch_m = steps.get("fetch") or {}
    valid_m = steps.get("validate")
    publish_m = steps.get("publish")
    raw, wire_bytes = extract_m.get("raw_bytes", 0), extract_m.get("bytes", 0)
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
    summary.update(
        {
            "hub": plan.hub,
            "job": plan.job,
            "job_bundle": ship_m.get("bundle"),
            "params": plan.params,
            "inputs": {name: m.get("rows") for name, m in (extract_m.get("inputs") or {}).items()},
            "rows_extracted": extract_m.get("rows"),
            "extract_seconds": extract_m.get("seconds"),
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
    target.write_text(page)
    return target
