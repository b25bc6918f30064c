"""Thin I/O around the protocol cores: sockets, netlink, the control socket."""
