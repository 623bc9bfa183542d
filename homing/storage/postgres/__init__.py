"""PostgreSQL backend: several Homing nodes share one database (`--database postgresql://...`)."""
