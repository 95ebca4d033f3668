-- East source: one row per machine per minute. Timestamps are UTC.
CREATE TABLE IF NOT EXISTS readings (
    ts TIMESTAMP NOT NULL,
    enterprise_id VARCHAR(8) NOT NULL,
    machine_id VARCHAR(16) NOT NULL,
    power_kw DOUBLE PRECISION,
    temperature_c DOUBLE PRECISION,
    vibration_mm_s DOUBLE PRECISION,
    status VARCHAR(8)
);
CREATE INDEX IF NOT EXISTS readings_ts_machine ON readings (ts, machine_id);
