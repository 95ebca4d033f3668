INSERT INTO "compute_usage" (
    "dag_id", "run_id", "run_key", "job", "hub", "day", "policy", "failovers", "hubs_tried", "raw_bytes",
    "bytes_in", "bytes_out", "compute_seconds", "core_seconds", "cost_yuan", "succeeded", "recorded_at"
) VALUES (
    :dag_id, :run_id, :run_key, :job, :hub, :day, :policy, :failovers, :hubs_tried, :raw_bytes,
    :bytes_in, :bytes_out, :compute_seconds, :core_seconds, :cost_yuan, :succeeded, :recorded_at
)
