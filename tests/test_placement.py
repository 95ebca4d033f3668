"""Placement over the four local hubs (real sshd): data locality, price, deadlines, health, host keys,
queues, and failover of a run's placement record.

Profiles are set per test through each hub's connection extras, as an operator would declare them.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import date

import pyarrow as pa
import pytest

from conftest import HUB_PORT_BASE, ROOT, TEST_HOME, WEST_PYTHON, hub_connection
from eastwest import SqlInput, Target, Workload
from eastwest.east import placing
from eastwest.east.plan import make_plan
from eastwest.east.steps import RunContext
from eastwest.hub import placement
from eastwest.hub.hook import HubError
from eastwest.hub.placement import CHEAPEST, FASTEST, HubProfile, NoHubAvailable, Survey
from eastwest.hub.transfer import TransferEngine
from eastwest.settings import DEFAULT_HUBS, Project, get_settings
from eastwest.west import wire
from eastwest_dev import localhubs

pytestmark = pytest.mark.integration

EQUAL = {"eastwest_link_mb_s": 50, "eastwest_rtt_ms": 20, "eastwest_price_core_hour": 0.05,
         "eastwest_price_gb_in": 0.1, "eastwest_slots": 2}  # fmt: skip


def declare(monkeypatch, profiles: dict[str, dict]) -> None:
    """Give every hub EQUAL attributes, changed by ``profiles[hub]``."""
    for hub in DEFAULT_HUBS:
        conn = hub_connection(hub)
        conn["extra"] = {**conn["extra"], **EQUAL, **profiles.get(hub, {})}
        monkeypatch.setenv(f"AIRFLOW_CONN_{hub.upper()}", json.dumps(conn))


@pytest.fixture
def dataset(tmp_path) -> tuple[wire.ChunkStore, wire.DatasetManifest]:
    """Four MB of readings in chunks, unique to the test (so no hub holds them yet)."""
    rows = 200_000
    salt = float(hash(str(tmp_path)) % 1000)
    t = pa.table({"id": pa.array(range(rows), pa.int64()), "v": pa.array([i * 0.25 + salt for i in range(rows)])})
    store = wire.ChunkStore(tmp_path / "east")
    return store, wire.write_chunks(t.to_batches(max_chunksize=50_000), t.schema, store, target_raw_bytes=1 << 20)


def chunks_of(manifest: wire.DatasetManifest) -> dict[str, int]:
    return {c.sha256: c.bytes for c in manifest.chunks}


def place(manifest: wire.DatasetManifest, tmp_path, policy: str = FASTEST, **kwargs) -> placement.Decision:
    surveys = placement.survey(DEFAULT_HUBS, chunks_of(manifest), cache_dir=kwargs.pop("cache_dir", None))
    profiles = {hub: placement.profile(hub) for hub in DEFAULT_HUBS}
    return placement.decide(surveys, profiles, raw_bytes=manifest.raw_bytes, rates={}, policy=policy, **kwargs)


def test_with_equal_links_the_hub_that_holds_the_data_is_chosen(hubs, monkeypatch, dataset, tmp_path) -> None:
    declare(monkeypatch, {})
    store, manifest = dataset
    TransferEngine("west_neimenggu").push("placement-locality", "readings", store, manifest)
    decision = place(manifest, tmp_path)
    assert decision.hub == "west_neimenggu", decision.table()
    rows = {c.hub: c for c in decision.candidates}
    assert rows["west_neimenggu"].missing_mb == 0
    assert {round(rows[h].missing_mb, 3) for h in DEFAULT_HUBS if h != "west_neimenggu"} == {
        round(manifest.bytes / 1e6, 3)
    }
    assert rows["west_neimenggu"].cost_yuan < rows["west_guizhou"].cost_yuan  # it receives nothing
    assert re.search(r"^west_neimenggu +chosen +0.00 ", decision.table(), re.M), decision.table()


def test_cheapest_picks_the_cheaper_hub_and_a_deadline_can_overrule_it(hubs, monkeypatch, dataset, tmp_path) -> None:
    # Gansu is cheapest but its link is slow; Ningxia is next cheapest and fast; Guizhou is fastest.
    declare(monkeypatch, {
        "west_gansu": {"eastwest_price_core_hour": 0.01, "eastwest_price_gb_in": 0.01, "eastwest_link_mb_s": 0.01},
        "west_ningxia": {"eastwest_price_core_hour": 0.02, "eastwest_price_gb_in": 0.02},
        "west_guizhou": {"eastwest_link_mb_s": 500},
    })  # fmt: skip
    _, manifest = dataset
    assert place(manifest, tmp_path, CHEAPEST).hub == "west_gansu"
    assert place(manifest, tmp_path, FASTEST).hub == "west_guizhou"
    slow = next(c for c in place(manifest, tmp_path, CHEAPEST).candidates if c.hub == "west_gansu")
    assert slow.time_s > 30  # 0.4 MB at 0.01 MB/s
    within = place(manifest, tmp_path, CHEAPEST, deadline_s=30)
    assert within.hub == "west_ningxia" and "within 30 s" in within.reason
    hopeless = place(manifest, tmp_path, CHEAPEST, deadline_s=0.001)
    assert hopeless.hub == "west_guizhou" and "no hub finishes in time" in hopeless.reason


@pytest.fixture
def gansu_down(hubs):
    state = TEST_HOME / "hubs"
    localhubs.down(state, HUB_PORT_BASE, ("west_gansu",))
    try:
        yield
    finally:
        localhubs.up(state, HUB_PORT_BASE, str(WEST_PYTHON))


def test_a_down_hub_is_excluded_with_the_reason_and_probes_are_cached(
    hubs, gansu_down, monkeypatch, dataset, tmp_path
) -> None:
    declare(monkeypatch, {"west_gansu": {"eastwest_link_mb_s": 1000}})  # it would be the fastest
    _, manifest = dataset
    cache = tmp_path / "health"
    decision = place(manifest, tmp_path, cache_dir=cache)
    gansu = next(c for c in decision.candidates if c.hub == "west_gansu")
    assert not gansu.usable and "unreachable" in gansu.excluded and "sshd" in gansu.excluded
    assert decision.hub != "west_gansu"
    assert re.search(r"^west_gansu +excluded: unreachable", decision.table(), re.M)
    # within the cache's lifetime the failed probe is reused; a fresh survey sees the hub again
    localhubs.up(TEST_HOME / "hubs", HUB_PORT_BASE, str(WEST_PYTHON))
    assert not placement.survey_hub("west_gansu", {}, cache_dir=cache).ok
    assert placement.survey_hub("west_gansu", {}, cache_dir=cache, ttl=0).ok


def test_a_hub_whose_host_key_is_not_its_pin_is_excluded_never_used(hubs, monkeypatch, dataset, tmp_path) -> None:
    declare(monkeypatch, {"west_gansu": {"eastwest_link_mb_s": 1000}})
    conn = json.loads(os.environ["AIRFLOW_CONN_WEST_GANSU"])
    conn["extra"]["host_key"] = hub_connection("west_ningxia")["extra"]["host_key"]  # a real key, not gansu's
    monkeypatch.setenv("AIRFLOW_CONN_WEST_GANSU", json.dumps(conn))
    _, manifest = dataset
    before = sorted((TEST_HOME / "hubs" / "west_gansu" / "root" / "chunks").rglob("*.arrow*"))
    decision = place(manifest, tmp_path)
    gansu = next(c for c in decision.candidates if c.hub == "west_gansu")
    assert not gansu.usable and "host key does not match its pin" in gansu.excluded
    assert decision.hub != "west_gansu"
    assert sorted((TEST_HOME / "hubs" / "west_gansu" / "root" / "chunks").rglob("*.arrow*")) == before


def test_when_every_hub_is_down_the_error_lists_each_and_why(hubs, monkeypatch, dataset, tmp_path) -> None:
    for hub in DEFAULT_HUBS:
        conn = hub_connection(hub)
        conn["port"] = 9  # nothing listens on the discard port here
        monkeypatch.setenv(f"AIRFLOW_CONN_{hub.upper()}", json.dumps(conn))
    _, manifest = dataset
    with pytest.raises(NoHubAvailable) as failed:
        place(manifest, tmp_path)
    message = str(failed.value)
    assert message.startswith("no western hub can take this run; nothing was sent or published")
    for hub in DEFAULT_HUBS:
        assert f"{hub}: unreachable at 127.0.0.1:9" in message


def test_queued_and_placed_work_counts_against_the_declared_slots_not_the_reported_ones() -> None:
    profiles = {h: HubProfile.from_extras(h, {**EQUAL, "eastwest_slots": 1}) for h in ("west_a", "west_b")}
    surveys = {
        # west_a reports 8 slots and one job running: it declared 1, so the next job waits
        "west_a": Survey("west_a", True, status={"slots": 8, "running": 1, "queued": 0}),
        "west_b": Survey("west_b", True, status={"slots": 1, "running": 0, "queued": 0}, missing_bytes=10_000_000),
    }
    rates = {"*": placement.Rate(seconds_per_mb=1.0, core_seconds_per_mb=1.0)}
    decision = placement.decide(surveys, profiles, raw_bytes=100_000_000, rates=rates)
    rows = {c.hub: c for c in decision.candidates}
    assert rows["west_a"].queue_s == pytest.approx(100.0) and rows["west_a"].slots == 1
    assert decision.hub == "west_b"  # sending 10 MB beats waiting 100 s
    surveys["west_a"].status["running"] = 0
    assert placement.decide(surveys, profiles, raw_bytes=100_000_000, rates=rates).hub == "west_a"
    # a run placed on west_a that has not started yet counts too
    pending = placement.decide(surveys, profiles, raw_bytes=100_000_000, rates=rates, pending={"west_a": 1})
    assert pending.hub == "west_b"


def test_declared_attributes_are_checked() -> None:
    assert HubProfile.from_extras("west_gansu", {}).price_core_hour == 0.025
    assert HubProfile.from_extras("west_gansu", {"eastwest_slots": "3"}).slots == 3
    assert HubProfile.from_extras("east_custom", {}).region == "east_custom"
    for bad in ({"eastwest_slots": 0}, {"eastwest_link_mb_s": "fast"}, {"eastwest_price_gb_in": -1}):
        with pytest.raises(placement.PlacementError, match="eastwest_"):
            HubProfile.from_extras("west_gansu", bad)
    with pytest.raises(placement.PlacementError, match="policy 'slowest'"):
        placement.choose([], "slowest")


# -- the run's placement record and failover ---------------------------------------------------------

WORKLOAD = Workload(
    job="daily_kpis",
    inputs=SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
    target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
)


def placed_run(data_dir, dataset, hub: str) -> tuple[RunContext, object]:
    ctx = RunContext.create("placement_test", WORKLOAD, Project(ROOT))
    plan = make_plan(WORKLOAD, WORKLOAD.check(ctx.project), get_settings(), dag_id="placement_test",
                     scope=f"t{abs(hash(str(data_dir))) % 10**6}", hub=hub, start_day=date(2026, 11, 24),
                     end_day=date(2026, 11, 25))  # fmt: skip
    store, manifest = dataset
    wire.save_dataset_manifest(ctx.manifest_path(plan, "readings"), manifest)
    return ctx, plan


def test_a_failed_hub_is_left_and_the_run_placed_again(hubs, monkeypatch, data_dir, dataset, caplog) -> None:
    declare(monkeypatch, {"west_guizhou": {"eastwest_link_mb_s": 500}})
    ctx, plan = placed_run(data_dir, dataset, "auto")
    assert placing.place(ctx, plan)["hub"] == "west_guizhou"
    assert placing.pending(ctx, plan) == {}  # its own reservation does not count against itself
    assert placing.hub_for(ctx, plan, placing.SHIP) == "west_guizhou"  # healthy, not failed: no move
    placing.record_failure(ctx, plan, "west_guizhou", placing.SHIP, "hub 'west_guizhou': the connection closed")
    with caplog.at_level(logging.WARNING):
        moved = placing.hub_for(ctx, plan, placing.SHIP)
    assert moved != "west_guizhou"
    record = placing.load(ctx, plan)
    assert record["hub"] == moved and [d["stage"] for d in record["decisions"]] == ["place", "ship"]
    excluded = next(c for c in record["decisions"][1]["candidates"] if c["hub"] == "west_guizhou")["excluded"]
    assert excluded.startswith("failed during ship at ")
    assert f"FAILOVER of run {plan.run_key}: hub west_guizhou failed during ship" in caplog.text


def test_a_run_that_named_its_hub_does_not_move(hubs, monkeypatch, data_dir, dataset) -> None:
    declare(monkeypatch, {})
    ctx, plan = placed_run(data_dir, dataset, "west_ningxia")
    assert placing.place(ctx, plan)["hub"] == "west_ningxia"
    placing.record_failure(ctx, plan, "west_ningxia", placing.COMPUTE, "killed")
    with pytest.raises(HubError, match="asked for west_ningxia by name, so it does not move"):
        placing.hub_for(ctx, plan, placing.FETCH)
    assert placing.load(ctx, plan)["hub"] == "west_ningxia"
