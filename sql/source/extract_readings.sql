-- One data interval [start, end) of minute readings, in a stable order (same interval, same bytes).
-- A job that declares enterprise_ids narrows the query to those enterprises.
SELECT ts, enterprise_id, machine_id, power_kw, temperature_c, vibration_mm_s, status
FROM readings
WHERE ts >= :start AND ts < :end
{% if enterprise_ids is defined and enterprise_ids %}  AND enterprise_id IN :enterprise_ids
{% endif %}ORDER BY ts, machine_id
