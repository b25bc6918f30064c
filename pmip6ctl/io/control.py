"""The control socket (/run/pmip6ctl/<node>.sock): one JSON object per line
each way. Request {"command": NAME, "args": {...}}; reply {"ok": true,
"result": ...} or {"ok": false, "error": "one line"}."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable

log = logging.getLogger("pmip6ctl.control")

Handler = Callable[[dict], Any | Awaitable[Any]]


class CommandError(Exception):
    """A request the daemon refuses, with the reason for the operator."""


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler]):
        self.path = Path(path)
        self.handlers = handlers
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()
        if self.path.exists():
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(await self._dispatch(line), default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict:
        try:
            request = json.loads(line)
            command = request["command"]
            args = request.get("args") or {}
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "malformed request: expected {\"command\": ..., \"args\": {...}}"}
        handler = self.handlers.get(command)
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r} (this daemon knows: {', '.join(sorted(self.handlers))})"}
        try:
            result = handler(args)
            if asyncio.iscoroutine(result):
                result = await result
            return {"ok": True, "result": result}
        except CommandError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug must not kill the daemon: report it
            log.exception("control command %s failed", command)
            return {"ok": False, "error": f"internal error in {command}: {exc}"}


class ControlClient:
    """Blocking client for the CLI."""

    def __init__(self, path: Path, timeout: float = 10.0):
        self.path = Path(path)
        self.timeout = timeout

    def call(self, command: str, **args) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError):
                raise ConnectionError(f"no daemon is listening on {self.path} (is it running?)") from None
            sock.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"the daemon on {self.path} closed the connection")
                buffer += chunk
        reply = json.loads(buffer)
        if not reply.get("ok"):
            raise CommandError(reply.get("error", "unknown error"))
        return reply["result"]
