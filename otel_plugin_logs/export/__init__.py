"""From host records to OTLP: the record model, batching, the encoder, the export pipeline and sinks."""
