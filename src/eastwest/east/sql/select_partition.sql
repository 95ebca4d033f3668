-- A run's partition in key order (to say whether a publish changed anything, and for reports).
SELECT * FROM {{ table | ident }}
WHERE "scope" = :scope
{%- if partition_column %}
  AND {{ partition_column | ident }} >= :start_day AND {{ partition_column | ident }} < :end_day
{%- endif %}
ORDER BY {% for key in keys %}{{ key | ident }}{% if not loop.last %}, {% endif %}{% endfor %}
