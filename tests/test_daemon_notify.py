"""sd_notify against real AF_UNIX datagram sockets: the daemon as systemd sees it, and Notifier alone."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from daemon_harness import DaemonProcess, copy_file, tagged, wait_until, write_config
from tagd.systemd import Notifier


class Receiver:
    """A bound datagram socket collecting every message in a thread, as systemd's would."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self) -> list[str]:
        return [m for _, m in self.messages]

    def fields(self, key: str) -> list[str]:
        """Every value sent for `key` (one message may carry several fields)."""
        return [line.split("=", 1)[1] for m in self.texts() for line in m.split("\n") if line.startswith(key + "=")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def short_dir():
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    folder = tempfile.mkdtemp(prefix="tagd-ns-")
    yield Path(folder)
    for p in Path(folder).iterdir():
        p.unlink()
    os.rmdir(folder)


def test_daemon_notifies_ready_status_watchdog_reloading_stopping(real_photo_dir: Path, tmp_path: Path,
                                                                    short_dir: Path) -> None:
    address = str(short_dir / "notify")
    receiver = Receiver(address)
    root = tmp_path / "photos"
    root.mkdir()
    db = tmp_path / "index.sqlite3"
    config = write_config(tmp_path / "config.toml", roots=[root])
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"}  # 2 s: pings every second
    try:
        with DaemonProcess(tmp_path, config=config, index=db, env=env) as daemon:
            daemon.wait_for(lambda: receiver.fields("READY"), 90, "READY=1")
            assert receiver.fields("READY")[0] == "1"
            copy_file(real_photo_dir / "chelsea.jpg", root / "cat.jpg")
            daemon.wait_for(lambda: tagged(db, [root / "cat.jpg"]), 60, "the photo tagged")
            wait_until(lambda: any(s.startswith("tagged 1,") for s in receiver.fields("STATUS")), 10,
                       "STATUS=tagged 1, ...", on_fail=lambda: "\n".join(receiver.texts()))
            # Idle, it keeps pinging at half the interval.
            pings_before = len(receiver.fields("WATCHDOG"))
            wait_until(lambda: len(receiver.fields("WATCHDOG")) >= pings_before + 2, 10, "two more WATCHDOG=1",
                       on_fail=lambda: "\n".join(receiver.texts()))
            ping_times = [t for t, m in receiver.messages if m == "WATCHDOG=1"]
            gaps = [b - a for a, b in zip(ping_times, ping_times[1:])]
            assert gaps and max(gaps) < 2.0, f"watchdog pings too far apart for a 2 s WatchdogSec: {gaps}"

            # SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
            daemon.signal(signal.SIGHUP)
            wait_until(lambda: len(receiver.fields("READY")) >= 2, 20, "READY=1 after the reload",
                       on_fail=lambda: "\n".join(receiver.texts()))
            reloading = [m for m in receiver.texts() if m.startswith("RELOADING=1")]
            assert reloading and "\nMONOTONIC_USEC=" in reloading[0], receiver.texts()

            rc, seconds = daemon.terminate()
            assert rc == 0, daemon.tail()
        wait_until(lambda: receiver.fields("STOPPING"), 5, "STOPPING=1", on_fail=lambda: "\n".join(receiver.texts()))
    finally:
        receiver.close()
    texts = receiver.texts()
    stopping = next(i for i, m in enumerate(texts) if m.startswith("STOPPING=1"))
    assert texts[0].startswith("READY=1")
    assert all(not m.startswith(("WATCHDOG=1", "READY=1")) for m in texts[stopping + 1:]), texts[stopping:]
    assert "STATUS=tagged 1," in texts[stopping]  # the last status goes with STOPPING


def test_notifier_abstract_socket() -> None:
    name = f"tagd-test-{uuid.uuid4().hex}"
    receiver = Receiver("\0" + name)
    try:
        notifier = Notifier(f"@{name}")
        assert notifier.enabled
        notifier.ready("starting")
        notifier.status("tagged 3")
        notifier.watchdog(force=True)
        notifier.stopping("bye")
        notifier.close()
        wait_until(lambda: len(receiver.messages) >= 4, 5, "four datagrams")
    finally:
        receiver.close()
    assert receiver.texts() == ["READY=1\nSTATUS=starting", "STATUS=tagged 3", "WATCHDOG=1", "STOPPING=1\nSTATUS=bye"]


def test_notifier_watchdog_interval_from_environment(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> None:
    address = str(short_dir / "n")
    receiver = Receiver(address)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        monkeypatch.setenv("WATCHDOG_USEC", "400000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        notifier = Notifier()
        assert notifier.watchdog_interval == pytest.approx(0.2)  # half of WatchdogSec
        notifier.watchdog()
        notifier.watchdog()  # too soon: not sent again
        time.sleep(0.25)
        notifier.watchdog()
        wait_until(lambda: len(receiver.messages) >= 2, 5, "two pings")
        time.sleep(0.1)
        assert receiver.texts() == ["WATCHDOG=1", "WATCHDOG=1"]

        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
        assert Notifier().watchdog_interval is None
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        assert Notifier().watchdog_interval == pytest.approx(0.2)
        notifier.close()
    finally:
        receiver.close()


def test_notifier_is_a_no_op_without_systemd(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    quiet = Notifier()
    assert not quiet.enabled and quiet.watchdog_interval is None
    quiet.ready("x")
    quiet.watchdog()
    quiet.stopping()
    # A socket that went away (systemd stopping) is never fatal either.
    gone = Notifier(str(short_dir / "nobody-listens"))
    gone.ready("x")
    gone.watchdog(force=True)
    gone.close()


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_exiftool_children_do_not_inherit_the_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's NOTIFY_SOCKET and watchdog settings are the daemon's: an exiftool child that
    inherited them could speak for tagd. The rest of the environment is passed on."""
    from tagd.metadata.exiftool import ExifTool

    monkeypatch.setenv("NOTIFY_SOCKET", "@tagd-test-notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("TAGD_TEST_MARKER", "kept")
    with ExifTool() as tool:
        tool.execute(["-ver"])
        assert tool._proc is not None
        environ = Path(f"/proc/{tool._proc.pid}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0] for entry in environ if entry}
    assert b"NOTIFY_SOCKET" not in names and b"WATCHDOG_USEC" not in names
    assert b"TAGD_TEST_MARKER=kept" in environ
