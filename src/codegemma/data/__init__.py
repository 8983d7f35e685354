"""FIM training data: ingest, filter, pack repositories, FIM-transform and write token shards."""
