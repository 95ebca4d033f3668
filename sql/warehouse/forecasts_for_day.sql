-- The nightly forecasts made for the local days of [start, end) (the day before each of them),
-- to score against what the meters then measured.
SELECT made_on, day, hour, enterprise_id, energy_kwh, capacity_kwh, model_version, hours_forecast
FROM energy_forecast
WHERE scope = 'nightly' AND day >= :start AND day < :end
ORDER BY day, enterprise_id, hour
