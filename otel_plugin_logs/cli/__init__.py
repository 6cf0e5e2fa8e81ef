"""The command line: run, demo, doctor, logs, and the console."""
