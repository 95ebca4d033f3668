-- Record an input's schema, replacing what was recorded for it (concurrent writers of one row take turns).
INSERT INTO "eastwest_input_schemas" ("dag_id", "input", "schema_json") VALUES (:dag_id, :input, :schema_json)
ON CONFLICT ("dag_id", "input") DO UPDATE SET "schema_json" = excluded."schema_json"
