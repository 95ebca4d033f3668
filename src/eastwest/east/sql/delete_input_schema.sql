DELETE FROM "eastwest_input_schemas" WHERE "dag_id" = :dag_id AND "input" = :input
