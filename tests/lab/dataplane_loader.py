"""Loads one node's data plane inside its namespace, fills its tables from a
JSON spec, attaches the programs, and exits: the programs keep forwarding
from their pinned maps with no process behind them.

    python -m tests.lab.dataplane_loader '<json spec>'
"""

import json
import socket
import sys
from pathlib import Path

from pmip6ctl import netns
from pmip6ctl.dataplane import Dataplane, DataplaneSettings, Encap, PeerKind, Tunnel


def main(spec: dict) -> None:
    netns.enter(spec["ns"])
    dp = Dataplane(DataplaneSettings(node=spec["node"], role=spec["role"],
                                     pin_root=Path(spec["pin_root"]), ro_trigger_packets=0))
    tables = dp.load()
    tables.set_tx_ports(index for index, _ in socket.if_nameindex())
    tables.set_local_addresses(spec.get("local", []))
    for tunnel_id, (encap, local, remote) in spec.get("tunnels", {}).items():
        tables.set_tunnel(int(tunnel_id), Tunnel(Encap[encap], local, remote, 5436, 5436))
    for address, tunnel_id, kind in spec.get("peers", []):
        tables.set_peer(address, tunnel_id, PeerKind[kind])
    for prefix, tunnel_id in spec.get("mns", []):
        tables.set_mn(prefix, tunnel_id)
    for function, ifname in spec["attach"]:
        dp.attach(function, ifname)
    print(f"ready {dp.compile_seconds:.1f}", flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
