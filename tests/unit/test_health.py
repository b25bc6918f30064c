"""/healthz from the event loop itself, and systemd's notify protocol: a real
asyncio loop in a thread, real HTTP requests to the metrics listener, a real
AF_UNIX datagram socket standing in for systemd (no root)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from pmip6ctl.daemon.health import LoopHealth
from pmip6ctl.io.sdnotify import Notifier, watchdog_seconds
from pmip6ctl.metrics import Metrics


class LoopThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, fn, *args):
        done = threading.Event()
        result = []
        self.loop.call_soon_threadsafe(lambda: (result.append(fn(*args)), done.set()))
        assert done.wait(10)
        return result[0]

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop():
    running = LoopThread()
    yield running
    running.close()


def get(url: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            body = answer.read().decode()
            status = answer.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def serve(health, metrics=None):
    metrics = metrics or Metrics("mag1", "mag")
    server = metrics.serve("127.0.0.1", 0, health=health)
    return server, f"http://127.0.0.1:{server.server_port}"


def test_healthz_is_ok_while_the_loop_turns_and_names_the_attachments(loop):
    attached = {"eth0": True, "eth1": True}
    health = LoopHealth(lambda: [("xdp_mag_transport", "eth0"), ("xdp_mag_access", "eth1")],
                        xdp_attached=attached.__getitem__)
    loop.call(health.start, loop.loop)
    server, base = serve(health)
    try:
        status, body = get(base + "/healthz")
        assert status == 200, body
        assert body["ok"] is True and body["loop"]["answered"] is True
        assert 0 <= body["loop"]["tick_age_seconds"] <= health.stale_after
        assert body["dataplane"] == {"attached": True, "programs": [
            {"program": "xdp_mag_transport", "interface": "eth0", "attached": True},
            {"program": "xdp_mag_access", "interface": "eth1", "attached": True}]}
        # a program taken off an interface behind the daemon's back fails it
        attached["eth1"] = False
        status, body = get(base + "/healthz")
        assert status == 503 and body["ok"] is False and body["loop"]["answered"] is True
        assert body["dataplane"]["attached"] is False
        assert [p["attached"] for p in body["dataplane"]["programs"]] == [True, False]
        # /metrics still answers on the same listener
        status, text = get(base + "/metrics")
        assert status == 200 and "pmip6_daemon_info" in text
    finally:
        server.shutdown()
        loop.call(health.stop)


def test_a_stalled_loop_fails_healthz_with_the_tick_age(loop):
    health = LoopHealth(lambda: [("xdp_lma", "eth0")], xdp_attached=lambda ifname: True, answer_timeout=0.5)
    loop.call(health.start, loop.loop)
    server, base = serve(health)
    release = threading.Event()
    try:
        loop.loop.call_soon_threadsafe(lambda: release.wait(60))     # the loop blocks, as a stuck handler would
        status, body = get(base + "/healthz")
        assert status == 503, body
        assert body["ok"] is False and body["loop"]["answered"] is False
        assert "did not answer within 0.5 s" in body["loop"]["error"]
        assert body["loop"]["tick_age_seconds"] >= 0.5
        assert body["dataplane"]["attached"] is None
        release.set()
        deadline = time.monotonic() + 30
        while get(base + "/healthz")[0] != 200:        # the loop turns again: healthy again
            assert time.monotonic() < deadline, "healthz stayed failed after the loop came back"
            time.sleep(0.1)
    finally:
        release.set()
        server.shutdown()
        loop.call(health.stop)


def test_healthz_fails_when_the_loop_is_gone():
    running = LoopThread()
    health = LoopHealth(lambda: [], answer_timeout=0.5)
    running.call(health.start, running.loop)
    running.close()
    ok, body = health.check()
    assert ok is False and body["loop"]["answered"] is False and "not running" in body["loop"]["error"]


def test_a_probe_that_raises_fails_healthz_and_says_why(loop):
    def probe():
        raise RuntimeError("no node yet")
    health = LoopHealth(probe)
    loop.call(health.start, loop.loop)
    ok, body = health.check()
    loop.call(health.stop)
    assert ok is False and "no node yet" in body["loop"]["error"]


def test_without_health_the_listener_serves_metrics_on_every_path():
    metrics = Metrics("lma", "lma")
    server = metrics.serve("127.0.0.1", 0)
    try:
        status, text = get(f"http://127.0.0.1:{server.server_port}/healthz")
        assert status == 200 and "pmip6_daemon_info" in text
    finally:
        server.shutdown()


# --- sd_notify --------------------------------------------------------------------------

@pytest.fixture
def systemd_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()


def test_notifier_sends_ready_watchdog_and_stopping_to_notify_socket(systemd_socket):
    sock, path = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("mag mag1 ready")
    assert sock.recv(4096) == b"READY=1\nSTATUS=mag mag1 ready"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_notifier_reaches_an_abstract_socket():
    name = f"pmip6ctl-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(10)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_notifier_without_notify_socket_does_nothing_and_a_gone_socket_is_not_fatal(tmp_path):
    assert not Notifier({}).enabled and Notifier({}).ready() is False
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).watchdog() is False


def test_watchdog_usec_is_read_only_for_this_process():
    pid = str(os.getpid())
    assert watchdog_seconds({"WATCHDOG_USEC": "20000000"}) == 20.0
    assert watchdog_seconds({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": pid}) == 20.0
    assert watchdog_seconds({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_seconds({}) is None


def test_the_loop_tick_pets_the_watchdog_at_half_its_interval(systemd_socket, loop):
    sock, path = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    health = LoopHealth(lambda: [], notifier=notifier)
    assert health.interval == pytest.approx(0.2)
    loop.call(health.start, loop.loop)
    try:
        assert sock.recv(4096) == b"WATCHDOG=1"       # the first tick
        assert sock.recv(4096) == b"WATCHDOG=1"       # and the next, from call_later
    finally:
        loop.call(health.stop)
