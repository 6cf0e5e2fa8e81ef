"""The host bridge: the socket server, runner connections, the ledger, supervision, replay."""
