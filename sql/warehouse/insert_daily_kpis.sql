INSERT INTO daily_kpis (scope, day, enterprise_id, machine_id, readings, energy_kwh, running_hours,
                        utilisation, p95_temperature_c, anomaly_count, hub)
VALUES (:scope, :day, :enterprise_id, :machine_id, :readings, :energy_kwh, :running_hours,
        :utilisation, :p95_temperature_c, :anomaly_count, :hub);
