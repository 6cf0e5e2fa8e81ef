"""Unit tests of the runner's parts: buffer, send window, sender states, encoding."""
