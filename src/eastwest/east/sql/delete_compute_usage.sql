DELETE FROM "compute_usage" WHERE "dag_id" = :dag_id AND "run_id" = :run_id
