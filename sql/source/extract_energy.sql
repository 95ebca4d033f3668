-- Power per enterprise and minute for one interval [start, end): what the energy forecast's
-- training needs (hourly energy per enterprise), and nothing more, so 28 days fit a hub's memory.
SELECT ts, enterprise_id, power_kw
FROM readings
WHERE ts >= :start AND ts < :end
ORDER BY ts, machine_id
