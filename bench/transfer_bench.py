"""Transfer benchmark: stock Airflow (CSV + SFTPHook) vs scp of Parquet vs this project's engine.

    make bench                                     # ≈1 GB raw Arrow, 200 Mbit/s + 30 ms and unshaped
    .venv/bin/python bench/transfer_bench.py --raw-gb 0.2 --memory-gb 0   # a quick run

Every method moves the same day(s) of park telemetry to an emulated western hub (sshd in its own
network namespace; tc tbf for the rate, a delay relay for the RTT) and brings the same job result
back. Each method runs in its own process so its peak RSS is its own; the hub's RSS is sampled
from every process in the hub's namespace. Needs root. Writes a table to stdout, a PNG chart and
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".local" / "bench"
WEST_PYTHON = ROOT / ".local" / "west-venv" / "bin" / "python"
METHODS = ("stock_sftp_csv", "scp_parquet", "eastwest_engine")
LABELS = {
    "stock_sftp_csv": "(a) stock Airflow: CSV + SFTPHook",
    "scp_parquet": "(b) scp of Parquet",
    "eastwest_engine": "(c) eastwest engine",
}
CASES = {
    "wan_200mbit_30ms": {"rate_mbit": 200, "rtt_ms": 30, "relay": True},
    "unshaped": {"rate_mbit": None, "rtt_ms": 0, "relay": False},
    "hub_1gbit_20ms": {"rate_mbit": 1000, "rtt_ms": 20, "relay": True},
}
FIRST_DAY = date(2026, 11, 1)
RESULT_NAME = "daily_kpis"


# -- data -------------------------------------------------------------------------------------------


def machines_for(raw_gb: float) -> tuple[int, int]:
    """(days, machines per day) for about ``raw_gb`` of raw Arrow (one machine-day ≈ 91 KB raw)."""
    machine_days = max(1, int(raw_gb * 1e9 / 91_000))
    days = max(1, machine_days // 5000)
    return days, max(1, machine_days // days)


def batches(days: int, machines: int):
    from eastwest_dev import telemetry

    for d in range(days):
        yield from telemetry.generate_day(FIRST_DAY + timedelta(days=d), machines)


def wire_fingerprint() -> str:
    """Chunks written by another version of the wire format are written again."""
    import hashlib

    return hashlib.sha256((ROOT / "src" / "eastwest" / "west" / "wire.py").read_bytes()).hexdigest()[:16]


def prepare(raw_gb: float, directory: Path, formats: tuple[str, ...]) -> dict:
    """Write the dataset as engine chunks (and CSV/Parquet for the baselines), once per size."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from eastwest.west import wire
    from eastwest_dev import telemetry

    days, machines = machines_for(raw_gb)
    info_path = directory / "info.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if (
            info["days"] == days
            and info["machines"] == machines
            and set(formats) <= set(info["formats"])
            and info.get("wire") == wire_fingerprint()
        ):
            return info
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    print(f"preparing {days} day(s) × {machines} machines of telemetry in {directory} …", flush=True)
    schema = telemetry.schema()
    manifest = wire.write_chunks(batches(days, machines), schema, wire.ChunkStore(directory / "chunks"))
    wire.save_dataset_manifest(directory / "readings.dataset.json", manifest)
    info = {
        "days": days,
        "machines": machines,
        "rows": manifest.rows,
        "raw_bytes": manifest.raw_bytes,
        "chunk_bytes": manifest.bytes,
        "formats": list(formats),
        "wire": wire_fingerprint(),
    }
    if "csv" in formats:
        with pacsv.CSVWriter(directory / "readings.csv", schema) as writer:
            for batch in batches(days, machines):
                writer.write_batch(batch)
        info["csv_bytes"] = (directory / "readings.csv").stat().st_size
    if "parquet" in formats:
        with pq.ParquetWriter(directory / "readings.parquet", schema, compression="zstd") as writer:
            for batch in batches(days, machines):
                writer.write_batch(batch)
        info["parquet_bytes"] = (directory / "readings.parquet").stat().st_size
    if "csv" in formats:  # the job's result, in each method's own format
        import polars as pl
        import pyarrow as pa

        from eastwest.west import jobs

        daily_kpis = jobs.load_module(ROOT / "include" / "jobs", "daily_kpis")
        defaults = jobs.read_spec(ROOT / "include" / "jobs", "daily_kpis").defaults()
        sample = pl.from_arrow(pa.Table.from_batches(list(telemetry.generate_day(FIRST_DAY, min(machines, 700)))))
        result = daily_kpis.transform(sample.lazy(), params=defaults).collect().to_arrow()
        pacsv.write_csv(result, directory / f"{RESULT_NAME}.csv")
        pq.write_table(result, directory / f"{RESULT_NAME}.parquet", compression="zstd")
        result_manifest = wire.write_chunks(
            result.to_batches(), result.schema, wire.ChunkStore(directory / "result-chunks")
        )
        wire.save_dataset_manifest(directory / f"{RESULT_NAME}.dataset.json", result_manifest)
    info_path.write_text(json.dumps(info))
    return info


def place_results(data: Path, hub_root: Path, run_key: str) -> None:
    """Put the job's result on the hub (as the job would have left it) before a method runs."""
    from eastwest.west import wire

    outbox = hub_root / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    for ext in ("csv", "parquet"):
        shutil.copy(data / f"{RESULT_NAME}.{ext}", outbox / f"{RESULT_NAME}.{ext}")
    manifest = wire.load_dataset_manifest(data / f"{RESULT_NAME}.dataset.json")
    src, dst = wire.ChunkStore(data / "result-chunks"), wire.ChunkStore(hub_root / "chunks")
    for chunk in manifest.chunks:
        dst.path(chunk.sha256).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src.path(chunk.sha256), dst.path(chunk.sha256))
    wire.save_dataset_manifest(hub_root / "scratch" / run_key / f"{RESULT_NAME}.dataset.json", manifest)


def reset_hub(hub_root: Path) -> None:
    for sub in ("chunks", "scratch", "inbox", "outbox"):
        shutil.rmtree(hub_root / sub, ignore_errors=True)
        (hub_root / sub).mkdir(parents=True)


def hand_to_hub_user(hub_root: Path) -> None:
    """What the bench put on the hub belongs to the hub's unprivileged user, as the hub's own files do."""
    from eastwest_dev import localhubs

    for sub in ("chunks", "scratch", "inbox", "outbox"):
        subprocess.run(["chown", "-R", f"{localhubs.hub_user()}:", str(hub_root / sub)], check=True)


# -- one method, in its own process ---------------------------------------------------------------------


def worker(method: str, data: Path, hub_root: Path, run_key: str, out: Path) -> dict:
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    from eastwest.hub.transfer import TransferEngine
    from eastwest.west import wire

    conn = json.loads(os.environ["AIRFLOW_CONN_BENCHHUB_PLAIN"])  # the baselines' plain login
    started = time.monotonic()  # imports above are not part of a transfer
    extra: dict = {}
    if method == "stock_sftp_csv":
        hook = SFTPHook(ssh_conn_id="benchhub_plain")
        hook.store_file(str(hub_root / "inbox" / "readings.csv"), str(data / "readings.csv"))
        hook.retrieve_file(str(hub_root / "outbox" / f"{RESULT_NAME}.csv"), str(out / f"{RESULT_NAME}.csv"))
        wire_bytes = (data / "readings.csv").stat().st_size + (out / f"{RESULT_NAME}.csv").stat().st_size
    elif method == "scp_parquet":
        known_hosts = out / "known_hosts"
        host = conn["host"] if conn["port"] == 22 else f"[{conn['host']}]:{conn['port']}"
        known_hosts.write_text(f"{host} {conn['extra']['host_key']}\n")
        ssh_opts = [
            "-q",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-i",
            conn["extra"]["key_file"],
            "-P",
            str(conn["port"]),
        ]
        target = f"{conn['login']}@{conn['host']}"
        subprocess.run(
            ["scp", *ssh_opts, str(data / "readings.parquet"), f"{target}:{hub_root / 'inbox'}/"], check=True
        )
        subprocess.run(
            ["scp", *ssh_opts, f"{target}:{hub_root / 'outbox' / RESULT_NAME}.parquet", str(out) + "/"], check=True
        )
        wire_bytes = (data / "readings.parquet").stat().st_size + (out / f"{RESULT_NAME}.parquet").stat().st_size
    else:
        manifest = wire.load_dataset_manifest(data / "readings.dataset.json")
        with TransferEngine("benchhub") as engine:  # ship and fetch are two tasks: two connections, as scp's two
            pushed = engine.push(run_key, "readings", wire.ChunkStore(data / "chunks"), manifest)
        with TransferEngine("benchhub") as engine:
            _, pulled = engine.pull(run_key, RESULT_NAME, wire.ChunkStore(out / "result"))
        wire_bytes = pushed.wire_bytes + pulled.wire_bytes
        extra = {
            "streams": pushed.streams,
            "send_seconds": round(pushed.send_seconds, 2),
            "push_link_mb_per_s": round(pushed.link_mb_per_s, 2),
        }
    seconds = time.monotonic() - started
    return {"seconds": seconds, "wire_bytes": wire_bytes, **extra}


def _rss_kb(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _descendants(root: int) -> list[str]:
    children: dict[str, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(fields[1], []).append(stat.parent.name)
    found, todo = [], [str(root)]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


class PeakRss:
    """Samples the summed RSS of a set of processes every 100 ms; keeps the peak.

    West: every process in the hub's network namespace. East: the method's process and its children
    (sampled from outside: ru_maxrss survives fork+exec and would report the parent's peak).
    """

    def __init__(self, *, ns: str | None = None, pid: int | None = None) -> None:
        self.ns, self.pid = ns, pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pids(self) -> list[str]:
        if self.ns:
            return subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout.split()
        return _descendants(self.pid) if self.pid else []

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in self._pids()))
            self._stop.wait(0.1)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_method(method: str, case: str, data: Path, link, info: dict) -> dict:
    hub_root = link.hub.root
    reset_hub(hub_root)
    run_key = f"bench-{case}-{method}".replace("_", "-")
    place_results(data, hub_root, run_key)
    hand_to_hub_user(hub_root)
    out = WORK / "out" / case / method
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {
        **os.environ,
        "AIRFLOW_CONN_BENCHHUB": json.dumps(link.connection),
        "AIRFLOW_CONN_BENCHHUB_PLAIN": json.dumps(link.baseline_connection),
        "EASTWEST_HUBS": "benchhub",
        "EASTWEST_DATA_DIR": str(WORK / "eastwest-data"),
    }
    with PeakRss(ns=link.ns) as west:
        proc = subprocess.Popen(
            [sys.executable, __file__, "worker", method, str(data), str(hub_root), run_key, str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with PeakRss(pid=proc.pid) as east:
            stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{method} on {case} failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["east_rss_mb"] = east.peak_kb / 1024
    rate = CASES.get(case, {}).get("rate_mbit")
    wire_mb = result["wire_bytes"] / 1e6
    row = {
        "case": case,
        "method": method,
        "raw_mb": round(info["raw_bytes"] / 1e6, 1),
        "wire_mb": round(wire_mb, 1),
        "seconds": round(result["seconds"], 2),
        "wire_mb_s": round(wire_mb / result["seconds"], 1),
        "link_util_pct": round(100 * wire_mb / result["seconds"] / (rate / 8), 1) if rate else None,
        "logical_mb_s": round(info["raw_bytes"] / 1e6 / result["seconds"], 1),
        "east_rss_mb": round(result["east_rss_mb"]),
        "west_rss_mb": round(west.peak_kb / 1024),
    }
    row.update({k: v for k, v in result.items() if k in ("streams", "send_seconds", "push_link_mb_per_s")})
    print(
        f"  {case:18} {LABELS[method]:36} {row['seconds']:7.1f}s  {row['logical_mb_s']:7.1f} MB/s logical", flush=True
    )
    return row


# -- report ---------------------------------------------------------------------------------------------


def table(rows: list[dict]) -> str:
    head = (
        "| case | method | raw MB | wire MB | seconds | wire MB/s | link util % | util while sending % "
        "| logical MB/s | vs (a) | peak RSS east MB | peak RSS west MB |"
    )
    lines = [head, "|" + "---|" * 12]
    for row in rows:
        base = next((r for r in rows if r["case"] == row["case"] and r["method"] == "stock_sftp_csv"), None)
        ratio = f"{row['logical_mb_s'] / base['logical_mb_s']:.1f}×" if base else "-"
        util = "-" if row["link_util_pct"] is None else f"{row['link_util_pct']}"
        rate = CASES.get(row["case"], {}).get("rate_mbit")
        sending = (
            f"{100 * row['push_link_mb_per_s'] / (rate / 8):.1f}" if rate and row.get("push_link_mb_per_s") else "-"
        )
        lines.append(
            f"| {row['case']} | {LABELS.get(row['method'], row['method'])} | {row['raw_mb']} | {row['wire_mb']} | "
            f"{row['seconds']} | {row['wire_mb_s']} | {util} | {sending} | {row['logical_mb_s']} | {ratio} | "
            f"{row['east_rss_mb']} | {row['west_rss_mb']} |"
        )
    return "\n".join(lines)


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in CASES if any(r["case"] == c for r in rows)]
    fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4.5), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        sub = [r for r in rows if r["case"] == case]
        short = {
            "stock_sftp_csv": "(a) CSV + SFTPHook",
            "scp_parquet": "(b) scp Parquet",
            "eastwest_engine": "(c) engine",
        }
        names = [short[r["method"]] for r in sub]
        bars = ax.bar(names, [r["logical_mb_s"] for r in sub], color=["#999999", "#6a8caf", "#2e7d32"][: len(sub)])
        ax.bar_label(bars, fmt="%.0f")
        ax.set_title(case.replace("_", " "))
        ax.set_ylabel("logical MB/s (raw Arrow per second, round trip)")
        ax.tick_params(axis="x", labelrotation=10)
    fig.suptitle("East → west → east: the same ≈1 GB of telemetry, three ways")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "worker":
        _, _, method, data, hub_root, run_key, out = sys.argv
        print(json.dumps(worker(method, Path(data), Path(hub_root), run_key, Path(out))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw-gb", type=float, default=1.0)
    parser.add_argument("--memory-gb", type=float, default=4.0, help="also ship this much with the engine (0: skip)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--chart", type=Path, default=ROOT / "bench" / "transfer.png")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument(
        "--report-only", action="store_true", help="print the table and redraw the chart from --results"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        rows = json.loads(args.results.read_text())
        print(table(rows))
        chart(rows, args.chart)
        return 0
    if os.geteuid() != 0:
        print("error: the benchmark emulates a WAN with network namespaces and tc; run it as root", file=sys.stderr)
        return 1

    from eastwest_dev.wanlab import WanLink

    data = WORK / f"data-{args.raw_gb:g}gb"
    info = prepare(args.raw_gb, data, ("csv", "parquet"))
    print(
        f"dataset: {info['rows']:,} rows, {info['raw_bytes'] / 1e6:.0f} MB raw Arrow, "
        f"{info['csv_bytes'] / 1e6:.0f} MB CSV, {info['parquet_bytes'] / 1e6:.0f} MB Parquet, "
        f"{info['chunk_bytes'] / 1e6:.0f} MB engine chunks",
        flush=True,
    )
    rows = []
    for case in args.cases.split(","):
        spec = CASES[case]
        with WanLink(
            "bench", index=9, state_dir=WORK / "hubs", west_python=str(WEST_PYTHON), baseline_login=True, **spec
        ) as link:
            for method in METHODS:
                rows.append(run_method(method, case, data, link, info))
    if args.memory_gb:
        big = WORK / f"data-{args.memory_gb:g}gb"
        big_info = prepare(args.memory_gb, big, ())
        shutil.copy(data / f"{RESULT_NAME}.dataset.json", big / f"{RESULT_NAME}.dataset.json")
        shutil.copytree(data / "result-chunks", big / "result-chunks", dirs_exist_ok=True)
        for ext in ("csv", "parquet"):
            shutil.copy(data / f"{RESULT_NAME}.{ext}", big / f"{RESULT_NAME}.{ext}")
        with WanLink(
            "bench",
            index=9,
            state_dir=WORK / "hubs",
            west_python=str(WEST_PYTHON),
            baseline_login=True,
            **CASES["unshaped"],
        ) as link:
            row = run_method("eastwest_engine", "unshaped", big, link, big_info)
            row["case"] = f"memory_{args.memory_gb:g}gb_unshaped"
            rows.append(row)
    print()
    print(table(rows))
    chart(rows, args.chart)
    args.results.write_text(json.dumps(rows, indent=1))
    print(f"\nchart: {args.chart}\nresults: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
