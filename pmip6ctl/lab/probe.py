"""A fixed-pace IPv6 echo sender, for measuring handovers; and a raw packet
sender (RawSender), for the flood of the robustness test and bench and for
the fuzz (lab/fuzz.py).

iputils ping cannot keep a pace below 10 ms while replies are missing: with
replies outstanding it polls up to MININTERVAL (10 ms) before it sends again
(ping_common.c, main_loop). Around a move a `-i 0.001` ping thus slows to
100 per second and both understates the loss and delays the MN's first
packet on the new link. SteadyPing sends on a fixed schedule, whatever
comes back, and counts the replies.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

from .. import netns

ECHO_REQUEST, ECHO_REPLY = 128, 129
PAYLOAD = bytes(range(56))


class SteadyPing:
    """`count` echo requests to `destination`, one every `interval` seconds,
    sent from namespace `namespace`; replies are awaited `linger` seconds
    after the last request."""

    def __init__(self, namespace: str, destination: str, count: int, interval: float, linger: float = 1.0):
        self.destination, self.count, self.interval, self.linger = destination, count, interval, linger
        self.identifier = random.getrandbits(16)
        self.replies: set[int] = set()
        self.sent = 0
        with netns.entered(namespace):
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        self.sock.settimeout(0.05)
        self._sending_done = threading.Event()
        self._sender = threading.Thread(target=self._send, daemon=True)
        self._receiver = threading.Thread(target=self._receive, daemon=True)

    def start(self) -> SteadyPing:
        self._receiver.start()
        self._sender.start()
        return self

    def result(self) -> tuple[int, int]:
        """Waits for the run to end: (sent, received)."""
        self._sender.join()
        self._receiver.join()
        self.sock.close()
        return self.sent, len(self.replies)

    def _send(self) -> None:
        began = time.perf_counter()
        for sequence in range(self.count):
            delay = began + sequence * self.interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            # the kernel fills in the ICMPv6 checksum of a raw socket (RFC 3542 §3.1)
            request = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, self.identifier, sequence) + PAYLOAD
            try:
                self.sock.sendto(request, (self.destination, 0))
            except OSError:
                pass                # no route for now: sent and lost, as over a radio
            self.sent += 1
        self._sending_done.set()

    def _receive(self) -> None:
        deadline = None
        while deadline is None or time.monotonic() < deadline:
            if deadline is None and self._sending_done.is_set():
                deadline = time.monotonic() + self.linger
            try:
                message = self.sock.recv(2048)
            except TimeoutError:
                continue
            if len(message) >= 8 and message[0] == ECHO_REPLY:
                identifier, sequence = struct.unpack_from("!HH", message, 4)
                if identifier == self.identifier:
                    self.replies.add(sequence)


IPV6_HDRINCL = 36


class RawSender:
    """Whole IP packets (IPv6 or IPv4, headers and sources whatever they
    say) sent from a lab namespace through raw sockets: the flood's and
    the fuzz's sender."""

    def __init__(self, namespace: str):
        with netns.entered(namespace):
            self.v6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.v6.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
            self.v4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)   # IP_HDRINCL implied

    def send(self, packet: bytes, destination: str) -> bool:
        """False when the socket buffer is full (the packet is not sent)."""
        sock = self.v6 if packet[0] >> 4 == 6 else self.v4
        try:
            sock.sendto(packet, (destination, 0))
            return True
        except BlockingIOError:
            return False

    def close(self) -> None:
        self.v6.close()
        self.v4.close()

    def __enter__(self) -> RawSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def flood(namespace: str, packet: bytes, destination: str, seconds: float, progress=None) -> int:
    """Send one whole IPv6 packet (its source whatever it says) from
    `namespace` as fast as one thread can, for `seconds`; returns how many
    went. progress(sent, seconds left) every 10 s."""
    sent, end, report = 0, time.monotonic() + seconds, time.monotonic() + 10
    with RawSender(namespace) as sender:
        while (now := time.monotonic()) < end:
            if progress is not None and now >= report:
                progress(sent, end - now)
                report = now + 10
            for _ in range(200):
                sent += sender.send(packet, destination)
    return sent
