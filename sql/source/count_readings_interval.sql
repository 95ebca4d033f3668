-- How many readings the source holds for one interval [start, end) (the demo's "already loaded?").
SELECT COUNT(*) FROM readings WHERE ts >= :start AND ts < :end;
