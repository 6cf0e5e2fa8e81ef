"""Settings from the environment (OTEL_* conventions), shared by every side."""
