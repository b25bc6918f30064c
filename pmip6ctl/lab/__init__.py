"""The lab: one host's worth of namespaces and veths running the daemons."""
