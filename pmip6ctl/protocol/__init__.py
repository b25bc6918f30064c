"""Sans-I/O protocol cores: plain objects fed with decoded messages, operator
requests and timer ticks, returning the actions to carry out (messages to
send, data-plane changes to apply). No sockets, no clocks, no maps here."""
