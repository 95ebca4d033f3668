SELECT "input" FROM "eastwest_input_schemas" WHERE "dag_id" = :dag_id ORDER BY "input"
