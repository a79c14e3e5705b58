"""What every app of the web side shares and none of them owns: the Redis connection, the
catalog's version key, the job lock, the per-request degraded notes, the metrics and the
structured logs. It imports no app, so each app may import it."""
