-- One row per DAG run: where it computed, what it used, what it cost. An analyst sums cost_yuan
-- per dag_id and day; placement reads a job's past seconds per raw MB per hub from it.
CREATE TABLE IF NOT EXISTS "compute_usage" (
    "dag_id" TEXT NOT NULL,
    "run_id" TEXT NOT NULL,
    "run_key" TEXT NOT NULL,
    "job" TEXT NOT NULL,
    "hub" TEXT NOT NULL,
    "day" TEXT NOT NULL,
    "policy" TEXT NOT NULL,
    "failovers" INTEGER NOT NULL,
    "hubs_tried" TEXT NOT NULL,
    "raw_bytes" BIGINT NOT NULL,
    "bytes_in" BIGINT NOT NULL,
    "bytes_out" BIGINT NOT NULL,
    "compute_seconds" DOUBLE PRECISION NOT NULL,
    "core_seconds" DOUBLE PRECISION NOT NULL,
    "cost_yuan" DOUBLE PRECISION NOT NULL,
    "succeeded" INTEGER NOT NULL,
    "recorded_at" TEXT NOT NULL,
    PRIMARY KEY ("dag_id", "run_id")
)
