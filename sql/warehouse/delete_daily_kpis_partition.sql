DELETE FROM daily_kpis WHERE scope = :scope AND day >= :start_day AND day < :end_day;
