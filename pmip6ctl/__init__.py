"""pmip6ctl: route optimization for Proxy Mobile IPv6 with an XDP data plane."""

__version__ = "0.1.0"
