-- A target table created from the result's Arrow schema: the warehouse's own columns (scope, hub)
-- first, then the result's; the primary key is (scope, keys...).
CREATE TABLE IF NOT EXISTS {{ table | ident }} (
    "scope" TEXT NOT NULL,
{%- for column in columns %}
    {{ column.name | ident }} {{ column.type }}{% if column.key %} NOT NULL{% endif %},
{%- endfor %}
    "hub" TEXT NOT NULL,
    PRIMARY KEY ("scope"{% for key in keys %}, {{ key | ident }}{% endfor %})
)
