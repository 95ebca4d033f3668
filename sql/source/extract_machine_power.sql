-- Power per machine and minute for one interval [start, end): the forecast's history, and each
-- enterprise's physical bound (the sum of its machines' peak power).
SELECT ts, enterprise_id, machine_id, power_kw
FROM readings
WHERE ts >= :start AND ts < :end
ORDER BY ts, machine_id
