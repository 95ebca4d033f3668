"""Cross-region placement: on which western hub a run finishes soonest or costs least, and why.

Every hub is an SSH connection whose extras *declare* what it offers (:class:`HubProfile`: compute
slots, memory, price per core-hour, price per GB received, link rate, round-trip time); hubs of the
four regions have documented defaults (``docs/placement.md``). Placing a run takes three steps:

1. **Survey** every hub at once (:func:`survey`): one SSH connection each, a handshake and the
   runner's ``probe`` (load, free disk and memory, jobs running and queued, installed job bundles)
   within :data:`PROBE_TIMEOUT` seconds, then ``have --stored``: which of the run's chunks the hub
   already holds. A hub that does not answer, or whose host key is not its pin, is excluded with
   the reason. Probe results are cached for :data:`PROBE_TTL` seconds.
2. **Estimate** for each healthy hub (:func:`estimate`)::

       time = bytes the hub lacks / link rate + queue wait + compute time
       cost = core-seconds × price per core-hour / 3600 + GB the hub receives × price per GB

   The queue wait counts the jobs running or queued on the hub and the runs already placed there
   against its slots; compute time and core-seconds come from this job's past runs per raw MB on
   that hub (any hub, else :data:`DEFAULT_SECONDS_PER_MB`).
3. **Choose** by policy (:func:`choose`): ``fastest`` (least estimated time), ``cheapest`` (least
   cost), or ``cheapest`` within a deadline (least cost among hubs that finish in time; the fastest
   when none does, saying so).

This module decides; it stores nothing. The east side (:mod:`eastwest.east.placing`) records the
decision with the run, re-places a run whose hub failed, and reads the history from the warehouse.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from eastwest.west import jobctl, protocol
from eastwest.west.protocol import check_name

AUTO = "auto"
FASTEST, CHEAPEST = "fastest", "cheapest"
POLICIES = (FASTEST, CHEAPEST)
#: Seconds a hub has to complete the handshake and answer the probe before it counts as down.
PROBE_TIMEOUT = 3.0
#: Seconds a probe result is reused (placing four runs at once asks each hub once).
PROBE_TTL = 10.0
#: Compute seconds per raw MB of input for a job that has never run (Polars on one core, roughly).
DEFAULT_SECONDS_PER_MB = 0.02
#: The least a job takes: starting Python, reading the bundle, writing the result.
MIN_COMPUTE_SECONDS = 1.0
#: Round trips a run spends on control (probe, have, commit, submit, status, fetch) besides data.
CONTROL_ROUND_TRIPS = 12


class PlacementError(Exception):
    """A placement request that cannot work (an unknown policy, a bad hub declaration)."""


class NoHubAvailable(Exception):
    """Every hub is down, mismatched or excluded; the message lists each hub and why (a retry may
    find one back)."""


@dataclass(frozen=True)
class HubProfile:
    """What a hub declares in its connection extras (``eastwest_<field>``), with regional defaults.

    :param slots: compute jobs the hub runs at once (also the size of its Airflow pool).
    :param memory_gb: memory a job may use.
    :param price_core_hour: ¥ per core-hour of compute.
    :param price_gb_in: ¥ per GB the hub receives.
    :param link_mb_s: the east→hub link rate, MB/s.
    :param rtt_ms: the east↔hub round-trip time, ms.
    """

    name: str
    region: str
    slots: int
    memory_gb: float
    price_core_hour: float
    price_gb_in: float
    link_mb_s: float
    rtt_ms: float

    NUMBERS = ("slots", "memory_gb", "price_core_hour", "price_gb_in", "link_mb_s", "rtt_ms")

    @classmethod
    def from_extras(cls, name: str, extras: Mapping[str, Any]) -> HubProfile:
        """The profile of hub ``name``: its defaults, overridden by ``eastwest_*`` extras."""
        base = DEFAULT_PROFILES.get(name) or replace(GENERIC_PROFILE, name=name, region=name)
        changes: dict[str, Any] = {}
        for key in cls.NUMBERS:
            value = extras.get(f"eastwest_{key}")
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not math.isfinite(number) or number < 0 or (key in ("slots", "link_mb_s") and number <= 0):
                raise PlacementError(
                    f"hub {name!r}: extra eastwest_{key} is {value!r}; it must be a "
                    f"{'positive' if key in ('slots', 'link_mb_s') else 'non-negative'} number"
                )
            changes[key] = int(number) if key == "slots" else number
        if "eastwest_region" in extras:
            changes["region"] = str(extras["eastwest_region"])[:80]
        return replace(base, **changes)

    def extras(self) -> dict[str, Any]:
        """The profile as connection extras (what the local hubs' set-up writes)."""
        return {"eastwest_region": self.region, **{f"eastwest_{k}": getattr(self, k) for k in self.NUMBERS}}


#: The four western regions of the national plan. Prices and latencies are documented in
#: docs/placement.md: core-hours at Chinese HPC centres cost about 0.025–0.15 ¥, western power
#: 0.38–0.40 ¥/kWh; hub-to-east round trips take 15–25 ms; links and slots differ by hub.
DEFAULT_PROFILES: dict[str, HubProfile] = {
    p.name: p
    for p in (
        HubProfile("west_guizhou", "Guizhou (Gui'an)", 4, 16.0, 0.060, 0.10, 50.0, 18.0),
        HubProfile("west_neimenggu", "Inner Mongolia (Horinger)", 8, 32.0, 0.035, 0.12, 25.0, 25.0),
        HubProfile("west_gansu", "Gansu (Qingyang)", 2, 8.0, 0.025, 0.15, 12.5, 24.0),
        HubProfile("west_ningxia", "Ningxia (Zhongwei)", 4, 16.0, 0.045, 0.08, 37.5, 20.0),
    )
}
#: A hub of another name declares what differs from this.
GENERIC_PROFILE = HubProfile("hub", "hub", 2, 8.0, 0.10, 0.10, 12.5, 20.0)


def profile(hub: str) -> HubProfile:
    """The declared profile of ``hub`` (its connection's extras over the defaults)."""
    from eastwest.hub.hook import WestHubHook

    return HubProfile.from_extras(hub, WestHubHook(hub).extras)


# -- survey: health and data locality ------------------------------------------------------------------


@dataclass
class Survey:
    """What one hub answered: its health, and how many of the run's bytes it lacks."""

    hub: str
    ok: bool
    reason: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    missing_bytes: int = 0
    seconds: float = 0.0


def _cache_path(cache_dir: Path | None, hub: str) -> Path | None:
    return cache_dir / f"{hub}.json" if cache_dir is not None else None


def _cached(path: Path | None, ttl: float) -> dict[str, Any] | None:
    if path is None or ttl <= 0:
        return None
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and time.time() - float(entry.get("at", 0)) < ttl else None


def _remember(path: Path | None, ok: bool, reason: str | None, status: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps({"at": time.time(), "ok": ok, "reason": reason, "status": status}))
    tmp.replace(path)


def survey_hub(
    hub: str, chunks: Mapping[str, int], *, timeout: float = PROBE_TIMEOUT, ttl: float = PROBE_TTL,
    cache_dir: Path | None = None,
) -> Survey:  # fmt: skip
    """Probe ``hub`` (or reuse a fresh probe) and ask which of ``chunks`` (digest → bytes) it stores."""
    from eastwest.hub.hook import HostKeyMismatch, HubError, WestHubHook

    started = time.monotonic()
    path = _cache_path(cache_dir, hub)
    cached = _cached(path, ttl)
    if cached is not None and not cached["ok"]:
        return Survey(hub, False, cached["reason"], seconds=time.monotonic() - started)
    try:
        hook = WestHubHook(hub, idle_timeout=timeout)
        hook.conn_timeout = timeout  # type: ignore[assignment]
        hook.conn_retry_attempts = 1
        if cached is None:
            status = json.loads(hook.call([jobctl.PROBE], what="probe"))
            _remember(path, True, None, status)
        else:
            status = cached["status"]
        present: set[str] = set()
        if chunks:
            stdin = json.dumps(list(chunks)).encode()
            present = set(json.loads(hook.call([protocol.HAVE, "--stored"], stdin=stdin)))
    except HostKeyMismatch as exc:
        reason = f"host key does not match its pin, never used: {exc}"
        _remember(path, False, reason, {})
        return Survey(hub, False, reason, seconds=time.monotonic() - started)
    except (HubError, ValueError) as exc:
        reason = str(exc).removeprefix(f"hub {hub!r}").strip(" :").removeprefix("is ") or type(exc).__name__
        _remember(path, False, reason, {})
        return Survey(hub, False, reason, seconds=time.monotonic() - started)
    missing = sum(size for digest, size in chunks.items() if digest not in present)
    return Survey(hub, True, None, status, missing, time.monotonic() - started)


def survey(
    hubs: Iterable[str], chunks: Mapping[str, int], *, timeout: float = PROBE_TIMEOUT, ttl: float = PROBE_TTL,
    cache_dir: Path | None = None,
) -> dict[str, Survey]:  # fmt: skip
    """Survey every hub in parallel (the slowest hub bounds the time: about ``timeout`` at worst)."""
    names = [check_name("hub", h) for h in hubs]
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        found = pool.map(lambda h: survey_hub(h, chunks, timeout=timeout, ttl=ttl, cache_dir=cache_dir), names)
        return dict(zip(names, found, strict=True))


# -- estimate and choose -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """A job's measured cost per raw MB of input on a hub: compute seconds and core-seconds."""

    seconds_per_mb: float
    core_seconds_per_mb: float
    runs: int = 0


DEFAULT_RATE = Rate(DEFAULT_SECONDS_PER_MB, DEFAULT_SECONDS_PER_MB)


@dataclass
class Candidate:
    """One hub's row of the placement table: its estimate, or why it was excluded."""

    hub: str
    excluded: str | None = None
    missing_mb: float = 0.0
    transfer_s: float = 0.0
    queue_s: float = 0.0
    compute_s: float = 0.0
    time_s: float = 0.0
    core_seconds: float = 0.0
    cost_yuan: float = 0.0
    ahead: int = 0
    slots: int = 0
    rate_from: str = ""

    @property
    def usable(self) -> bool:
        return self.excluded is None


def usable_slots(prof: HubProfile, status: Mapping[str, Any]) -> int:
    """The slots placement counts on: what the hub's probe reports, never more than it declares."""
    reported = int(status.get("slots") or prof.slots)
    return max(1, min(prof.slots, reported))


def estimate(
    prof: HubProfile, found: Survey, *, raw_bytes: int, rate: Rate, rate_from: str, pending: int = 0
) -> Candidate:
    """Time and cost of the run on one healthy hub."""
    raw_mb = raw_bytes / 1e6
    compute_s = max(MIN_COMPUTE_SECONDS, rate.seconds_per_mb * raw_mb)
    core_seconds = max(compute_s * 0.5, rate.core_seconds_per_mb * raw_mb)
    slots = usable_slots(prof, found.status)
    ahead = int(found.status.get("running") or 0) + int(found.status.get("queued") or 0) + pending
    queue_s = 0.0 if ahead < slots else (ahead - slots + 1) / slots * compute_s
    transfer_s = found.missing_bytes / (prof.link_mb_s * 1e6) + CONTROL_ROUND_TRIPS * prof.rtt_ms / 1000
    cost = core_seconds * prof.price_core_hour / 3600 + found.missing_bytes / 1e9 * prof.price_gb_in
    return Candidate(
        hub=prof.name,
        missing_mb=round(found.missing_bytes / 1e6, 3),
        transfer_s=round(transfer_s, 3),
        queue_s=round(queue_s, 3),
        compute_s=round(compute_s, 3),
        time_s=round(transfer_s + queue_s + compute_s, 3),
        core_seconds=round(core_seconds, 3),
        cost_yuan=round(cost, 8),
        ahead=ahead,
        slots=slots,
        rate_from=rate_from,
    )


@dataclass
class Decision:
    """A placement: the chosen hub, the policy, and every candidate's row."""

    hub: str
    policy: str
    deadline_s: float | None
    candidates: list[Candidate]
    reason: str
    seconds: float = 0.0
    at: float = field(default_factory=time.time)

    def chosen(self) -> Candidate:
        return next(c for c in self.candidates if c.hub == self.hub)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        return cls(**{**data, "candidates": [Candidate(**c) for c in data["candidates"]]})

    def table(self) -> str:
        """The candidates as a text table (the task log and the run report show it)."""
        head = f"{'hub':<16} {'':<8} {'to send MB':>10} {'send s':>7} {'queue s':>7} {'compute s':>9} "
        head += f"{'total s':>8} {'core-s':>7} {'cost ¥':>10}"
        lines = [head]
        for c in sorted(self.candidates, key=lambda c: (not c.usable, c.hub != self.hub, c.time_s)):
            if not c.usable:
                lines.append(f"{c.hub:<16} excluded: {c.excluded}")
                continue
            mark = "chosen" if c.hub == self.hub else ""
            lines.append(
                f"{c.hub:<16} {mark:<8} {c.missing_mb:>10.2f} {c.transfer_s:>7.2f} {c.queue_s:>7.2f} "
                f"{c.compute_s:>9.2f} {c.time_s:>8.2f} {c.core_seconds:>7.1f} {c.cost_yuan:>10.6f}"
            )
        return "\n".join(lines)


def check_policy(policy: str, deadline_s: float | None = None) -> None:
    if policy not in POLICIES:
        raise PlacementError(f"placement policy {policy!r} is not one of {', '.join(POLICIES)}")
    if deadline_s is not None and not (isinstance(deadline_s, int | float) and deadline_s > 0):
        raise PlacementError(f"a placement deadline must be a positive number of seconds, got {deadline_s!r}")


def choose(candidates: list[Candidate], policy: str, deadline_s: float | None = None) -> tuple[str, str]:
    """The hub ``policy`` picks among usable candidates, and a sentence saying why."""
    check_policy(policy, deadline_s)
    usable = [c for c in candidates if c.usable]
    if not usable:
        raise NoHubAvailable(
            "no western hub can take this run; nothing was sent or published: "
            + "; ".join(f"{c.hub}: {c.excluded}" for c in candidates)
            + ". Start a hub (local hubs: `make hubs`) or fix its connection, then clear the task"
        )
    fastest = min(usable, key=lambda c: (c.time_s, c.cost_yuan, c.hub))
    if policy == FASTEST:
        return fastest.hub, f"fastest: {fastest.hub} finishes first (about {fastest.time_s:.1f} s)"
    in_time = [c for c in usable if deadline_s is None or c.time_s <= deadline_s]
    if not in_time:
        return fastest.hub, (
            f"cheapest within {deadline_s:.0f} s: no hub finishes in time, so the fastest, {fastest.hub} "
            f"(about {fastest.time_s:.1f} s)"
        )
    cheapest = min(in_time, key=lambda c: (c.cost_yuan, c.time_s, c.hub))
    within = f" within {deadline_s:.0f} s" if deadline_s is not None else ""
    return cheapest.hub, f"cheapest{within}: {cheapest.hub} costs least (about ¥{cheapest.cost_yuan:.6f})"


def decide(
    surveys: Mapping[str, Survey],
    profiles: Mapping[str, HubProfile],
    *,
    raw_bytes: int,
    rates: Mapping[str, Rate],
    policy: str = FASTEST,
    deadline_s: float | None = None,
    pending: Mapping[str, int] | None = None,
    excluded: Mapping[str, str] | None = None,
) -> Decision:
    """Estimate every surveyed hub and choose one by ``policy``.

    :param rates: this job's measured rate per hub; the key ``"*"`` is its rate on any hub.
    :param pending: runs already placed on each hub that have not reached it yet.
    :param excluded: hubs not to use, with the reason (e.g. it failed earlier in this run).
    """
    started = time.monotonic()
    candidates = []
    for hub, found in surveys.items():
        why = (excluded or {}).get(hub) or (None if found.ok else found.reason or "did not answer")
        if why:
            candidates.append(Candidate(hub=hub, excluded=why))
            continue
        rate, source = (rates[hub], "this hub") if hub in rates else (
            (rates["*"], "other hubs") if "*" in rates else (DEFAULT_RATE, "default")
        )  # fmt: skip
        candidates.append(
            estimate(profiles[hub], found, raw_bytes=raw_bytes, rate=rate, rate_from=source,
                     pending=(pending or {}).get(hub, 0))
        )  # fmt: skip
    hub, reason = choose(candidates, policy, deadline_s)
    return Decision(hub, policy, deadline_s, candidates, reason, round(time.monotonic() - started, 4))
