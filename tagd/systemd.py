"""systemd's notify protocol (sd_notify), without libsystemd: READY, STATUS, WATCHDOG, STOPPING.

Every call is a no-op when NOTIFY_SOCKET is unset, so the daemon runs the same from a
terminal. The socket may be a path or an abstract name ("@...").
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        enabled = usec is not None and usec.isdigit() and (pid is None or pid == str(os.getpid()))
        # Ping at half the interval systemd gives us, as sd_watchdog_enabled() advises.
        self.watchdog_interval: float | None = int(usec) / 2e6 if enabled and usec else None
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def _send(self, message: str) -> None:
        if not self.address:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode("utf-8"), target)
        except OSError as exc:  # systemd gone (shutdown) or socket not ours: never fatal
            log.debug("sd_notify %r failed: %s", message, exc)

    def ready(self, status: str | None = None) -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def reloading(self) -> None:
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def stopping(self, status: str | None = None) -> None:
        self._send("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self, force: bool = False) -> None:
        if self.watchdog_interval is None and not force:
            return
        now = time.monotonic()
        if force or now - self._last_ping >= (self.watchdog_interval or 0):
            self._last_ping = now
            self._send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
