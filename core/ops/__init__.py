"""Operations: activity log, error log, metrics, alerts, health."""
