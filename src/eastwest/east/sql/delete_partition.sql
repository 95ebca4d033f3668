-- The rows one run replaces: its scope, and its days when the target is partitioned.
DELETE FROM {{ table | ident }}
WHERE "scope" = :scope
{%- if partition_column %}
  AND {{ partition_column | ident }} >= :start_day AND {{ partition_column | ident }} < :end_day
{%- endif %}
