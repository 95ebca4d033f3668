-- Every reading the source holds (a full snapshot: no interval), in a stable order.
SELECT ts, enterprise_id, machine_id, power_kw, temperature_c, vibration_mm_s, status
FROM readings
ORDER BY ts, machine_id
