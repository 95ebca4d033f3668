INSERT INTO readings (ts, enterprise_id, machine_id, power_kw, temperature_c, vibration_mm_s, status)
VALUES (:ts, :enterprise_id, :machine_id, :power_kw, :temperature_c, :vibration_mm_s, :status);
