"""ingest area of the data flow."""
