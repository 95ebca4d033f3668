SELECT day, enterprise_id, machine_id, readings, energy_kwh, running_hours, utilisation,
       p95_temperature_c, anomaly_count, hub
FROM daily_kpis
WHERE scope = :scope AND day >= :start_day AND day < :end_day
ORDER BY day, enterprise_id, machine_id;
