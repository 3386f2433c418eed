"""Jobs run by the engine: each is a per-item function, a per-shard reduce and a final reduce."""
