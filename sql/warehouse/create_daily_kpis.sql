-- East warehouse: daily KPIs per machine. `scope` is 'nightly' for the scheduled pipeline and
-- 'analyst-<key>' for an analyst request; (scope, day) is the partition a run replaces.
CREATE TABLE IF NOT EXISTS daily_kpis (
    scope VARCHAR(64) NOT NULL,
    day DATE NOT NULL,
    enterprise_id VARCHAR(8) NOT NULL,
    machine_id VARCHAR(16) NOT NULL,
    readings BIGINT NOT NULL,
    energy_kwh DOUBLE PRECISION NOT NULL,
    running_hours DOUBLE PRECISION NOT NULL,
    utilisation DOUBLE PRECISION NOT NULL,
    p95_temperature_c DOUBLE PRECISION NOT NULL,
    anomaly_count BIGINT NOT NULL,
    hub VARCHAR(64) NOT NULL,
    PRIMARY KEY (scope, day, enterprise_id, machine_id)
);
