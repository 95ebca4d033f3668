"""The energy forecast at park scale: which learner, and what training and inference cost on a hub.

    python bench/forecast_bench.py                    # 28 days × 700 machines (≈ 28.2M readings)
    python bench/forecast_bench.py --machines 100     # a smaller park, for a quick look

Three measurements on the same generated telemetry (``eastwest_dev.telemetry``, the documented
structure: daily and weekly cycles, machines that keep their size, holidays, drifting activity):

choice
    scikit-learn's ``HistGradientBoostingRegressor`` (what the training job uses) against
    LightGBM's ``LGBMRegressor`` with matching settings (absolute-error loss, 15 leaves, leaves of
    ≥ 20 rows, 300 rounds, learning rate 0.1), on the same features (``include/jobs/_energy.py``)
    and the same time-ordered split (the last 7 days held out): MAE, MAPE against seasonal-naive,
    fit seconds. Both run in one process of the east's environment (LightGBM is a dev dependency).
training
    the ``train_energy_forecast`` job itself, in a fresh process of the hub's environment
    (``.local/west-venv``, what the runner runs jobs with), on the 28 days read from an Arrow IPC
    file as the runner reads its input chunks: wall seconds from reading the input to the one-row
    result, and the process's peak RSS.
inference
    the ``energy_forecast`` job in a fresh hub-environment process: the last 8 days and the model
    just trained, forecasting the next day for every enterprise.

Results go to ``bench/forecast_results.json``; BENCHMARKS.md quotes them with this command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WEST_PYTHON = ROOT / ".local" / "west-venv" / "bin" / "python"
FIRST = date(2026, 8, 10)  # a Monday; four ordinary weeks (``--first 2026-09-07`` holds out National Day)
DAYS = 28
TZ = "Asia/Shanghai"

#: Run in the hub's environment: the job as the runner would run it, timed and measured alone.
HUB_CASE = r"""
import json, resource, sys, time
import importlib
import pyarrow as pa, pyarrow.ipc as ipc, polars as pl
sys.path.insert(0, sys.argv[1])
case, data, model_file = sys.argv[2], sys.argv[3], sys.argv[4]
started = time.perf_counter()
with pa.memory_map(data) as source:
    table = ipc.open_file(source).read_all()
readings = pl.from_arrow(table).lazy()
if case == "train":
    job = importlib.import_module("jobs.train_energy_forecast")
    empty = pl.DataFrame(schema={"name": pl.String, "version": pl.String, "onnx": pl.Binary}).lazy()
    params = {"model_name": "energy_forecast", "tz": "Asia/Shanghai", "holdout_days": 7, "max_iter": 300}
    row = job.transform(readings, empty, params).collect().to_dicts()[0]
    open(model_file, "wb").write(row.pop("onnx"))
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
else:
    job = importlib.import_module("jobs.energy_forecast")
    onnx = open(model_file, "rb").read()
    import hashlib
    model = pl.DataFrame([{"name": "energy_forecast", "version": hashlib.sha256(onnx).hexdigest(), "onnx": onnx}]).lazy()
    result = job.transform(readings, model, {"tz": "Asia/Shanghai"}).collect()
    out = {"rows": result.height, "enterprises": result["enterprise_id"].n_unique()}
out["seconds"] = time.perf_counter() - started
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["input_rows"] = table.num_rows
print(json.dumps(out))
"""


def generate(machines: int, folder: Path, first: date) -> tuple[Path, Path, float]:
    """Write the 28 days (training) and their last 8 (inference) as Arrow IPC files."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from eastwest_dev import telemetry

    folder.mkdir(parents=True, exist_ok=True)
    columns = {
        "train": ["ts", "enterprise_id", "power_kw"],
        "forecast": ["ts", "enterprise_id", "machine_id", "power_kw"],
    }
    paths = {name: folder / f"{name}-{first}-{machines}.arrow" for name in columns}
    started = time.perf_counter()
    if all(p.exists() for p in paths.values()):
        return paths["train"], paths["forecast"], 0.0
    schema = telemetry.schema()
    writers = {name: ipc.new_file(paths[name].with_suffix(".partial"), pa.schema([schema.field(c) for c in cols]))
               for name, cols in columns.items()}  # fmt: skip
    for i in range(DAYS):
        day = first + timedelta(days=i)
        for batch in telemetry.generate_day(day, machines):
            writers["train"].write_batch(batch.select(columns["train"]))
            if i >= DAYS - 8:
                writers["forecast"].write_batch(batch.select(columns["forecast"]))
    for name, writer in writers.items():
        writer.close()
        paths[name].with_suffix(".partial").replace(paths[name])
    return paths["train"], paths["forecast"], time.perf_counter() - started


def on_hub(case: str, data: Path, model: Path) -> dict:
    result = subprocess.run(
        [str(WEST_PYTHON), "-c", HUB_CASE, str(ROOT / "include"), case, str(data), str(model)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"{case} failed on the hub environment:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def choose(data: Path) -> dict:
    """HGB (the training job's own ``fit``) and LightGBM on the job's features and split."""
    import lightgbm
    import numpy as np
    import polars as pl

    from eastwest.west import jobs

    job = jobs.load_module(ROOT / "include" / "jobs", "train_energy_forecast")
    energy = job._energy
    cut = job.split(energy.hourly(pl.scan_ipc(data), TZ), holdout_days=7)
    train, holdout = cut.train, cut.holdout
    x_train, y_train, x_hold = energy.matrix(train), energy.target(train), energy.matrix(holdout)
    scale = holdout["scale"].to_numpy()
    learners = {
        "sklearn HistGradientBoostingRegressor": lambda: job.fit(x_train, y_train, 300),
        "LightGBM LGBMRegressor": lambda: lightgbm.LGBMRegressor(
            objective="l1", n_estimators=300, learning_rate=0.1, num_leaves=15, min_child_samples=20,
            reg_lambda=1.0, random_state=0, verbose=-1, n_jobs=2,
        ).fit(x_train, y_train),
    }  # fmt: skip
    out: dict = {"train_rows": train.height, "holdout_rows": holdout.height}
    baseline = energy.errors(holdout["energy_kwh"], energy.seasonal_naive(holdout))
    out["seasonal-naive"] = {"mae": baseline[0], "mape": baseline[1]}
    for name, train_one in learners.items():
        started = time.perf_counter()
        learner = train_one()
        fit = time.perf_counter() - started
        predicted = np.clip(learner.predict(x_hold) * scale, 0, None)
        mae, mape = energy.errors(holdout["energy_kwh"], predicted)
        out[name] = {"mae": mae, "mape": mape, "fit_seconds": fit, "vs_baseline": 1 - mape / baseline[1]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=700, help="machines in the park (700 ≈ 1M readings a day)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".local" / "bench" / "forecast")
    parser.add_argument("--out", type=Path, default=HERE / "forecast_results.json")
    parser.add_argument("--first", type=date.fromisoformat, default=FIRST, help="the first of the 28 days")
    args = parser.parse_args(argv)
    if not WEST_PYTHON.exists():
        raise SystemExit(f"{WEST_PYTHON} is missing: run `make west-venv` first")

    train_file, forecast_file, generated = generate(args.machines, args.data_dir, args.first)
    print(f"telemetry: {DAYS} days × {args.machines} machines in {generated:.0f}s → {train_file}", flush=True)
    model = args.data_dir / f"model-{args.first}-{args.machines}.onnx"
    training = on_hub("train", train_file, model)
    print(f"training: {training['seconds']:.1f}s, peak RSS {training['peak_rss_mb']:.0f} MB", flush=True)
    inference = on_hub("forecast", forecast_file, model)
    print(f"inference: {inference['seconds']:.2f}s, peak RSS {inference['peak_rss_mb']:.0f} MB", flush=True)
    choice = choose(train_file)
    results = {"machines": args.machines, "days": DAYS, "first_day": args.first.isoformat(), "training": training,
               "inference": inference, "choice": choice}  # fmt: skip
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")

    base = choice["seasonal-naive"]
    print(f"\n{training['input_rows']:,} readings, {choice['train_rows']:,} training rows, "
          f"{choice['holdout_rows']:,} held-out enterprise-hours (last 7 days)\n")  # fmt: skip
    print("| model | MAE (kWh) | MAPE | MAPE vs seasonal-naive | fit (s) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| seasonal-naive (same hour last week) | {base['mae']:.3f} | {base['mape']:.2%} | – | – |")
    for name in ("sklearn HistGradientBoostingRegressor", "LightGBM LGBMRegressor"):
        c = choice[name]
        print(f"| {name} | {c['mae']:.3f} | {c['mape']:.2%} | {c['vs_baseline']:.1%} lower | {c['fit_seconds']:.1f} |")
    print("\n| on the hub's environment | wall (s) | peak RSS (MB) | target |")
    print("|---|---:|---:|---|")
    print(f"| training, {DAYS} days | {training['seconds']:.1f} | {training['peak_rss_mb']:.0f} | ≤ 300 s, ≤ 2048 MB |")
    print(f"| inference, {inference['enterprises']} enterprises × 24 h | {inference['seconds']:.2f} | "
          f"{inference['peak_rss_mb']:.0f} | ≤ 10 s |")  # fmt: skip
    print(f"| backtest MAPE (training job) | {training['mape']:.2%} vs {training['baseline_mape']:.2%} | "
          f"{1 - training['mape'] / training['baseline_mape']:.1%} lower | ≥ 15 % lower |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
