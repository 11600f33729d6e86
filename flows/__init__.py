"""flows: the Prefect flows, deployments and automations; they wire pipelines/ and the DVC stages."""
