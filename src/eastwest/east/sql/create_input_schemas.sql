-- The Arrow schema each input of each DAG had when it was last published: a change is reported
-- before anything is published.
CREATE TABLE IF NOT EXISTS "eastwest_input_schemas" (
    "dag_id" TEXT NOT NULL,
    "input" TEXT NOT NULL,
    "schema_json" TEXT NOT NULL,
    PRIMARY KEY ("dag_id", "input")
)
