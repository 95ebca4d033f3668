-- A job's measured compute seconds and core-seconds per raw MB on each hub, over its recent
-- successful runs (placement's compute-time estimate).
SELECT "hub", SUM("compute_seconds") AS seconds, SUM("core_seconds") AS core_seconds,
       SUM("raw_bytes") AS raw_bytes, COUNT(*) AS runs
FROM "compute_usage"
WHERE "job" = :job AND "succeeded" = 1 AND "compute_seconds" > 0 AND "core_seconds" > 0
      AND "raw_bytes" > 0
GROUP BY "hub"
