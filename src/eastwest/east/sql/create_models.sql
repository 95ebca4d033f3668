-- The model registry: one row per model version (the SHA-256 of its ONNX bytes). At most one
-- version of a model is the champion; the others are candidates (not promoted, with the reason)
-- or retired (former champions). metrics holds the training job's whole result but the bytes.
CREATE TABLE IF NOT EXISTS "models" (
    "name" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "created" TEXT NOT NULL,
    "hub" TEXT NOT NULL,
    "dag_id" TEXT NOT NULL,
    "run_key" TEXT NOT NULL,
    "bundle" TEXT NOT NULL,
    "train_start" TEXT NOT NULL,
    "train_end" TEXT NOT NULL,
    "holdout_start" TEXT NOT NULL,
    "holdout_end" TEXT NOT NULL,
    "mae" DOUBLE PRECISION NOT NULL,
    "mape" DOUBLE PRECISION NOT NULL,
    "baseline_mae" DOUBLE PRECISION NOT NULL,
    "baseline_mape" DOUBLE PRECISION NOT NULL,
    "champion_version" TEXT,
    "champion_mape" DOUBLE PRECISION,
    "metrics" TEXT NOT NULL,
    "onnx" {{ blob }} NOT NULL,
    PRIMARY KEY ("name", "version")
)
