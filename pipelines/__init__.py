"""flightops: the training DAG's steps, the typed config loader, the registry and the monitor (docs/)."""
