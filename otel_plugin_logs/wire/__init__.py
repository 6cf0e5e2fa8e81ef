"""The wire between runner and host: framing, message and record shapes, the exit counter file."""
