"""The attacks of issue 12, each tried against the node cores (no root)
and in the lab (root): the forged message must change nothing."""

import sys
from pathlib import Path

# the node-core builders live with the unit tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
