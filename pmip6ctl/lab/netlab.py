"""Network namespaces and veth links for the lab and the tests.

Everything is built with `ip -batch` per namespace, and every namespace name
starts with the lab's prefix; destroy() removes what this object built, and
the namespaces it is named, even after a build that failed half-way. Each veth end gets GRO on (a frame
redirected into a veth is only delivered if the peer runs NAPI) and tx
checksum offload off (native XDP would forward TCP with unfilled checksums):
both facts are from DESIGN §4.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Iterable

from .. import netns


class LabError(RuntimeError):
    pass


def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, text=True, capture_output=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{' '.join(argv)} failed: {' | '.join(detail) or proc.returncode}")
    return proc.stdout


def list_namespaces(prefix: str) -> list[str]:
    out = _run(["ip", "netns", "list"])
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


@dataclass
class NetLab:
    prefix: str = "pmip-"
    namespaces: list[str] = field(default_factory=list)

    def ns(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def add_namespace(self, short: str) -> str:
        name = self.ns(short)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.ip(short, "link set lo up")
        return name

    def ip(self, short: str, *commands: str, family: int | None = None) -> None:
        """Runs `ip` commands in a namespace, one batch (family 4 or 6 for
        commands that cannot tell it from their arguments, like rules)."""
        flags = [f"-{family}"] if family else []
        _run(["ip", *flags, "-n", self.ns(short), "-batch", "-"], stdin="\n".join(commands) + "\n")

    def sh(self, short: str, *argv: str) -> str:
        return _run([*netns.nsenter_prefix(self.ns(short)), *argv])

    def sh_ok(self, short: str, *argv: str) -> str:
        """Like sh, but returns the output whatever the exit status (ping
        with losses exits 1 and still says how many replies came)."""
        proc = netns.run(self.ns(short), *argv, check=False)
        return proc.stdout + proc.stderr

    def sysctl(self, short: str, **settings: str | int) -> None:
        args = [f"{key.replace('__', '.')}={value}" for key, value in settings.items()]
        self.sh(short, "sysctl", "-qw", *args)

    def veth(self, a: str, a_if: str, b: str, b_if: str, *, mtu: int | None = None, mac_a: str | None = None,
             mac_b: str | None = None) -> None:
        """A veth pair between namespaces a and b, both ends up."""
        tmp_a, tmp_b = f"t{abs(hash((a, a_if))) % 10**8}", f"t{abs(hash((b, b_if))) % 10**8}"
        _run(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b])
        _run(["ip", "link", "set", tmp_a, "netns", self.ns(a), "name", a_if])
        _run(["ip", "link", "set", tmp_b, "netns", self.ns(b), "name", b_if])
        for short, ifname, mac in ((a, a_if, mac_a), (b, b_if, mac_b)):
            commands = [f"link set {ifname} up"]
            if mtu:
                commands.insert(0, f"link set {ifname} mtu {mtu}")
            if mac:
                commands.insert(0, f"link set {ifname} address {mac}")
            self.ip(short, *commands)
            self.sh(short, "ethtool", "-K", ifname, "gro", "on", "tx", "off")

    def router(self, short: str) -> None:
        self.sysctl(short, net__ipv6__conf__all__forwarding=1, net__ipv4__ip_forward=1,
                    # our own tunnel packets may come back to the kernel (XDP_PASS on
                    # NO_NEIGH): with our source address, IPv4 would call them martians
                    net__ipv4__conf__all__accept_local=1,
                    net__ipv4__conf__all__rp_filter=0, net__ipv4__conf__default__rp_filter=0)

    def destroy(self, shorts: Iterable[str] = ()) -> list[str]:
        """Deletes the namespaces we made, and those named in shorts (so that
        a fresh process can remove what an earlier one built)."""
        wanted = set(self.namespaces) | {self.ns(s) for s in shorts}
        gone = []
        for name in sorted(wanted & set(list_namespaces(self.prefix))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            gone.append(name)
        self.namespaces.clear()
        return gone
