-- A model's registered versions, newest first, without their bytes (or with them: with_bytes).
SELECT "name", "version", "status", "reason", "created", "hub", "dag_id", "run_key", "bundle",
       "train_start", "train_end", "holdout_start", "holdout_end", "mae", "mape", "baseline_mae",
       "baseline_mape", "champion_version", "champion_mape", "metrics"{% if with_bytes %}, "onnx"{% endif %}
FROM "models"
WHERE "name" = :name
{% if version %}  AND "version" = :version
{% endif %}{% if status %}  AND "status" = :status
{% endif %}ORDER BY "created" DESC, "version"
