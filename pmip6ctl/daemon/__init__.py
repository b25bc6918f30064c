"""The daemons: I/O and data-plane glue around the protocol cores."""
