"""Where a run computes: its placement record, failover, and the runs already placed on each hub.

The DAG's ``place`` task surveys the hubs and chooses one (:mod:`eastwest.hub.placement`); the
choice and its table are kept with the run, in ``reports/RUN/placement.json``, which the later
steps read (:func:`current`). A run that asked for ``auto`` fails over: a step that loses its hub
(unreachable, ``sshd`` gone, the job killed) records the failure before it fails
(:func:`on_hub`), and its retry (:func:`hub_for`) places the run again on another healthy hub,
which gets the data the run needs from there on (shipped, deduplicated as always). A run that named
its hub stays on it and fails with the hub's error instead.

The record also says which hubs hold the run's data and its result, what each hub received, and
every decision and failure, for the run report and the ``compute_usage`` row.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eastwest.east.plan import Plan
from eastwest.east.steps import RunContext
from eastwest.hub import placement
from eastwest.west import wire

log = logging.getLogger(__name__)

#: A run placed on a hub counts against the hub's queue for at most this long before its job starts.
RESERVATION_HOURS = 6.0
SHIP, COMPUTE, FETCH = "ship", "compute", "fetch"


def record_path(ctx: RunContext, plan: Plan) -> Path:
    return ctx.report_dir(plan) / "placement.json"


def load(ctx: RunContext, plan: Plan) -> dict[str, Any] | None:
    path = record_path(ctx, plan)
    return json.loads(path.read_text()) if path.exists() else None


def save(ctx: RunContext, plan: Plan, record: dict[str, Any]) -> None:
    path = record_path(ctx, plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = wire.temp_path(path)
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def current(ctx: RunContext, plan: Plan) -> str:
    """The hub the run is placed on now (the named hub of a run that never placed)."""
    record = load(ctx, plan)
    if record is not None:
        return str(record["hub"])
    if plan.hub == placement.AUTO:
        raise placement.PlacementError(f"run {plan.run_key} has not been placed yet; run its place task first")
    return plan.hub


# -- reservations: runs placed but not yet running on their hub ---------------------------------------


def _reservations(ctx: RunContext) -> Path:
    return ctx.settings.data_dir / "placements"


def reserve(ctx: RunContext, plan: Plan, hub: str) -> None:
    """Count the run against ``hub``'s queue until its job is submitted there."""
    path = _reservations(ctx) / f"{plan.run_key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = wire.temp_path(path)
    tmp.write_text(json.dumps({"hub": hub, "at": time.time()}))
    tmp.replace(path)


def release(ctx: RunContext, plan: Plan) -> None:
    (_reservations(ctx) / f"{plan.run_key}.json").unlink(missing_ok=True)


def pending(ctx: RunContext, plan: Plan) -> dict[str, int]:
    """Runs (other than this one) placed on each hub whose job has not been submitted yet."""
    counts: dict[str, int] = {}
    cutoff = time.time() - RESERVATION_HOURS * 3600
    for path in _reservations(ctx).glob("*.json"):
        if path.stem == plan.run_key:
            continue
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if float(entry.get("at", 0)) >= cutoff:
            counts[str(entry["hub"])] = counts.get(str(entry["hub"]), 0) + 1
    return counts


# -- placing ----------------------------------------------------------------------------------------


def run_chunks(ctx: RunContext, plan: Plan) -> tuple[dict[str, int], int]:
    """The run's input chunks (digest → bytes) and raw bytes, from the extracted manifests."""
    chunks: dict[str, int] = {}
    raw = 0
    for item in ctx.workload.inputs:
        manifest = wire.load_dataset_manifest(ctx.manifest_path(plan, item.name))
        raw += manifest.raw_bytes
        chunks.update({c.sha256: c.bytes for c in manifest.chunks})
    return chunks, raw


def rates_path(ctx: RunContext) -> Path:
    return ctx.settings.data_dir / "hubs" / "rates" / f"{ctx.workload.job}.json"


def save_rates(ctx: RunContext, found: dict[str, tuple[float, float, int]]) -> None:
    """Keep the job's measured rates next to the run data, where placing reads them without a database."""
    path = rates_path(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = wire.temp_path(path)
    tmp.write_text(json.dumps(found))
    tmp.replace(path)


def rates(ctx: RunContext) -> dict[str, placement.Rate]:
    """The job's measured rates per hub: the copy the last run's report left (``save_rates``), else
    the warehouse's ``compute_usage`` itself (opening a database costs seconds; placing should not)."""
    from adbc_driver_manager import Error as DatabaseError

    try:
        found = json.loads(rates_path(ctx).read_text())
    except (OSError, ValueError):
        from eastwest.east import warehouse
        from eastwest.east.connections import database_url

        try:
            found = warehouse.usage_rates(database_url(ctx.workload.target.conn_id, ctx.settings), ctx.workload.job)
        except (OSError, DatabaseError) as exc:  # placement still works on defaults
            log.warning("could not read past runs of %s from compute_usage: %s", ctx.workload.job, exc)
            return {}
        save_rates(ctx, found)
    return {hub: placement.Rate(*values) for hub, values in found.items()}


def _decide(
    ctx: RunContext, plan: Plan, candidates: list[str], excluded: dict[str, str]
) -> tuple[placement.Decision, dict[str, placement.Survey]]:
    chunks, raw = run_chunks(ctx, plan)
    cache = ctx.settings.data_dir / "hubs" / "health"
    surveys = placement.survey(candidates, chunks, cache_dir=cache)
    profiles = {hub: placement.profile(hub) for hub in candidates}
    decision = placement.decide(
        surveys, profiles, raw_bytes=raw, rates=rates(ctx), policy=plan.policy, deadline_s=plan.deadline_s,
        pending=pending(ctx, plan), excluded=excluded,
    )  # fmt: skip
    return decision, surveys


def place(ctx: RunContext, plan: Plan) -> dict[str, Any]:
    """Choose the run's hub (``auto``: by the plan's policy over every configured hub) and record it."""
    started = time.monotonic()
    candidates = list(ctx.settings.hubs) if plan.hub == placement.AUTO else [plan.hub]
    decision, _ = _decide(ctx, plan, candidates, {})
    record: dict[str, Any] = {
        "run_key": plan.run_key,
        "requested": plan.hub,
        "policy": plan.policy,
        "deadline_s": plan.deadline_s,
        "hub": decision.hub,
        "decisions": [{**decision.to_dict(), "stage": "place"}],
        "failures": [],
        "shipped": {},
        "computed": {},
        "received": {},
        "fetched": {},
    }
    save(ctx, plan, record)
    reserve(ctx, plan, decision.hub)
    log.info("placed run %s on %s (%s)\n%s", plan.run_key, decision.hub, decision.reason, decision.table())
    return {
        "hub": decision.hub,
        "reason": decision.reason,
        "policy": plan.policy,
        "seconds": round(time.monotonic() - started, 3),
        "table": decision.table(),
    }


def record_failure(ctx: RunContext, plan: Plan, hub: str, stage: str, error: str) -> None:
    """Note that ``hub`` failed this run during ``stage``: a retry places the run elsewhere."""
    record = load(ctx, plan)
    if record is None:
        return
    at = datetime.now(UTC).isoformat(timespec="seconds")
    record["failures"].append({"hub": hub, "stage": stage, "at": at, "error": error[:500]})
    save(ctx, plan, record)
    log.warning("hub %s failed during %s at %s: %s", hub, stage, at, error[:500])


def hub_for(ctx: RunContext, plan: Plan, stage: str) -> str:
    """The hub ``stage`` runs on: the placed hub if it is healthy and has not failed this run, else
    (``auto`` runs) a new placement without it. Named hubs never move."""
    record = load(ctx, plan)
    if record is None:
        if plan.hub != placement.AUTO:  # a named hub, used without a place step: nothing to decide
            return plan.hub
        place(ctx, plan)
        record = load(ctx, plan)
        assert record is not None
    hub = str(record["hub"])
    failed = {f["hub"]: f"failed during {f['stage']} at {f['at']}: {f['error'][:160]}" for f in record["failures"]}
    health = placement.survey_hub(hub, {}, cache_dir=ctx.settings.data_dir / "hubs" / "health", ttl=2.0)
    if hub not in failed and health.ok:
        return hub
    if hub not in failed:  # down before this step could use it: a failure of the run's hub all the same
        record_failure(ctx, plan, hub, stage, f"does not answer: {health.reason}")
        failed[hub] = f"failed during {stage}: does not answer ({health.reason})"
    why = failed[hub]
    if record["requested"] != placement.AUTO:
        from eastwest.hub.hook import HubError

        raise HubError(
            f"hub {hub!r} {why}; this run asked for {hub} by name, so it does not move. Retry when the hub "
            "is back, or trigger the run with hub 'auto' to let it fail over"
        )
    try:
        decision, _ = _decide(ctx, plan, list(ctx.settings.hubs), failed)
    except placement.NoHubAvailable:
        if not failed:
            raise
        log.warning("every hub that has not failed this run is down; trying those that failed earlier again")
        decision, _ = _decide(ctx, plan, list(ctx.settings.hubs), {})
    record = load(ctx, plan) or record
    record["hub"] = decision.hub
    record["decisions"].append({**decision.to_dict(), "stage": stage})
    save(ctx, plan, record)
    reserve(ctx, plan, decision.hub)
    log.warning(
        "FAILOVER of run %s: hub %s %s; the %s step and what follows now run on %s (%s)\n%s",
        plan.run_key, hub, why, stage, decision.hub, decision.reason, decision.table(),
    )  # fmt: skip
    return decision.hub


@contextmanager
def on_hub(ctx: RunContext, plan: Plan, stage: str) -> Iterator[str]:
    """Run ``stage`` on the run's hub; a hub failure is recorded (then raised) so the retry moves."""
    from eastwest.hub.hook import HubError

    hub = hub_for(ctx, plan, stage)
    try:
        yield hub
    except HubError as exc:
        record_failure(ctx, plan, hub, stage, str(exc))
        raise


def mark(ctx: RunContext, plan: Plan, what: str, hub: str, value: Any) -> None:
    """Record a fact about the run on ``hub``: ``shipped`` (bundle digest), ``computed`` (True),
    ``received``/``fetched`` (bytes added)."""
    record = load(ctx, plan)
    if record is None:
        return
    if what in ("received", "fetched"):
        record[what][hub] = int(record[what].get(hub, 0)) + int(value)
    else:
        record[what][hub] = value
    save(ctx, plan, record)


def usage(ctx: RunContext, plan: Plan, *, compute_seconds: float, core_seconds: float) -> dict[str, Any]:
    """The run's hub, bytes and cost for ``compute_usage``: each hub's GB received at its price, and
    the core-seconds at the final hub's price."""
    record = load(ctx, plan) or {"hub": plan.hub, "received": {}, "fetched": {}, "failures": [], "policy": ""}
    hub = str(record["hub"])
    cost = 0.0
    for name, received in record["received"].items():
        cost += int(received) / 1e9 * placement.profile(name).price_gb_in
    if hub != placement.AUTO:
        cost += core_seconds * placement.profile(hub).price_core_hour / 3600
    tried = list(dict.fromkeys([*(f["hub"] for f in record["failures"]), hub]))
    return {
        "hub": hub,
        "policy": str(record.get("policy") or ""),
        "failovers": len({f["hub"] for f in record["failures"]} - {hub}),
        "hubs_tried": ",".join(tried),
        "bytes_in": sum(int(v) for v in record["received"].values()),
        "bytes_out": sum(int(v) for v in record["fetched"].values()),
        "compute_seconds": float(compute_seconds),
        "core_seconds": float(core_seconds),
        "cost_yuan": round(cost, 8),
    }
