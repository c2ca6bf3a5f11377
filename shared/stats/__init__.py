"""Pure statistics over NumPy arrays: no Kafka, no Redis, no clock."""
