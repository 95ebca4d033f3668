-- Make a reload of one interval idempotent.
DELETE FROM readings WHERE ts >= :start AND ts < :end;
