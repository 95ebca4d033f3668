"""Hub memory: peak RSS and time of the daily_kpis job on a hub, whole input vs machine groups.

    .venv/bin/python bench/hub_memory_bench.py [--days 1,10,31,50] [--machines 700]

For each size, N days of demo telemetry (700 machines: 1,008,000 readings a day) are written as
wire chunks into a hub chunk store, then the hub's own Python runs the runner's job step
(``eastwest.west.runner``) twice in fresh processes: with the input read whole into one table
(what the runner did before ``PARTITION_BY``), and group by group of machines (what it does now
for a job that declares ``PARTITION_BY`` and an input over ``PARTITION_RAW_BYTES``). Peak RSS is
the job process's own (``ru_maxrss``); both runs must give the same rows. Results go to
``bench/hub_memory_results.json`` and the chart ``bench/hub_memory.png``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".local" / "bench" / "hub-memory"
WEST_PYTHON = ROOT / ".local" / "west-venv" / "bin" / "python"
FIRST_DAY = date(2026, 9, 1)
WHOLE = 1 << 50  # a group size no input reaches: the input is read whole


def prepare(days: int, machines: int) -> Path:
    """A hub root holding run ``bench``'s input ``readings`` of ``days`` days (kept between runs)."""
    from eastwest.west import runner, wire
    from eastwest_dev import telemetry

    root = WORK / f"{days}d-{machines}m"
    manifest_path = runner.dataset_path(root, "bench", "readings")
    if manifest_path.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)

    def batches():
        for offset in range(days):
            yield from telemetry.generate_day(FIRST_DAY + timedelta(days=offset), machines)

    manifest = wire.write_chunks(batches(), telemetry.schema(), wire.ChunkStore(root / "chunks"))
    wire.save_dataset_manifest(manifest_path, manifest)
    return root


def worker(root: Path, group_bytes: int) -> dict:
    """Run the job step in this (fresh) process; report time, peak RSS and a digest of the rows."""
    import argparse as ap
    import hashlib

    import pyarrow as pa

    from eastwest.west import runner, wire

    runner.PARTITION_RAW_BYTES = group_bytes
    started = time.monotonic()
    runner._run_job(ap.Namespace(root=root, run="bench", job="daily_kpis", bundle="0" * 64), ROOT / "include")
    seconds = time.monotonic() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = wire.load_dataset_manifest(runner.dataset_path(root, "bench", "daily_kpis"))
    table = pa.Table.from_batches(list(wire.ChunkStore(root / "chunks").batches(out)))
    table = table.sort_by([("day", "ascending"), ("machine_id", "ascending")])
    digest = hashlib.sha256(json.dumps(table.to_pylist(), default=str).encode()).hexdigest()
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb), "rows_out": table.num_rows, "digest": digest}


def run(root: Path, group_bytes: int) -> dict:
    done = subprocess.run(
        [str(WEST_PYTHON), __file__, "worker", str(root), str(group_bytes)],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'dev'}", "PATH": "/usr/bin:/bin"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"the job step failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, secs) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style in (("whole", "o--"), ("groups", "s-")):
        sub = [r for r in rows if r["mode"] == mode]
        x = [r["readings"] / 1e6 for r in sub]
        mem.plot(x, [r["peak_rss_mb"] for r in sub], style, label=mode)
        secs.plot(x, [r["seconds"] for r in sub], style, label=mode)
    mem.axhline(1024, color="grey", linewidth=0.8, linestyle=":")
    mem.set(xlabel="input readings (millions)", ylabel="peak RSS of the job (MB)", title="hub memory, daily_kpis")
    secs.set(xlabel="input readings (millions)", ylabel="seconds", title="job step time")
    mem.legend()
    secs.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(rows: list[dict]) -> str:
    lines = [
        "| input days | readings | raw Arrow MB | mode | groups | seconds | peak RSS MB | same rows as whole |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['days']} | {r['readings']:,} | {r['raw_mb']:,.0f} | {r['mode']} | {r['groups']} | {r['seconds']} "
            f"| {r['peak_rss_mb']:,} | {r['same']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "worker":
        print(json.dumps(worker(Path(sys.argv[2]), int(sys.argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", default="1,10,31,50", help="input sizes in days of 700 machines (comma-separated)")
    parser.add_argument("--machines", type=int, default=700)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "hub_memory_results.json")
    parser.add_argument("--chart", type=Path, default=ROOT / "bench" / "hub_memory.png")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "dev")]
    import math

    from eastwest.west import runner, wire

    rows = []
    for days in (int(d) for d in args.days.split(",")):
        root = prepare(days, args.machines)
        manifest = wire.load_dataset_manifest(runner.dataset_path(root, "bench", "readings"))
        whole = run(root, WHOLE)
        grouped = run(root, runner.PARTITION_RAW_BYTES)
        groups = math.ceil(manifest.raw_bytes / runner.PARTITION_RAW_BYTES)
        for mode, got in (("whole", whole), ("groups", grouped)):
            rows.append(
                {
                    "days": days,
                    "readings": manifest.rows,
                    "raw_mb": manifest.raw_bytes / 1e6,
                    "mode": mode,
                    "groups": (groups if groups > 1 else "-") if mode == "groups" else 1,
                    "same": "yes" if got["digest"] == whole["digest"] else "NO",
                    **got,
                }  # fmt: skip
            )
            print(f"  {days:3} days {manifest.rows:>12,} readings  {mode:6}  {got['seconds']:7.1f}s  "
                  f"{got['peak_rss_mb']:6,} MB", flush=True)  # fmt: skip
    print()
    print(table(rows))
    args.results.write_text(json.dumps(rows, indent=1))
    chart(rows, args.chart)
    print(f"\nchart: {args.chart}\nresults: {args.results}")
    return 0 if all(r["same"] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
