INSERT INTO "eastwest_input_schemas" ("dag_id", "input", "schema_json") VALUES (:dag_id, :input, :schema_json)
