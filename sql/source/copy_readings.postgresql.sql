COPY readings (ts, enterprise_id, machine_id, power_kw, temperature_c, vibration_mm_s, status)
FROM STDIN WITH (FORMAT csv, NULL '');
