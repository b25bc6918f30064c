"""The XDP programs' C sources, as the package data of pmip6ctl.bpf (pyproject.toml
maps that package onto this directory; pmip6ctl/defs.py reads it through
importlib.resources). No Python code lives here."""
