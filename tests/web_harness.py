"""A real `tagd web` for tests: a library of real photos tagged by `tagd scan` (the real model,
written by exiftool), served by the real command in a subprocess on a free port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(XDG_STATE_HOME=str(home / "state"), XDG_CONFIG_HOME=str(home / "config"),
               XDG_CACHE_HOME=str(home / "cache"), XDG_DATA_HOME=str(home / "data"))
    return env


def tagd(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagd", *args], capture_output=True, text=True, timeout=600,
                          env=env, input=stdin)


def make_library(real_photo_dir: Path, root: Path, index: Path, env: dict[str, str]) -> list[Path]:
    """Copies of the real photos under `root`, tagged and indexed by `tagd scan`."""
    root.mkdir(parents=True)
    for src in sorted(real_photo_dir.iterdir()):
        shutil.copyfile(src, root / src.name)
    done = tagd(env, "--index", str(index), "scan", str(root))
    assert done.returncode == 0, done.stderr
    return sorted(root.iterdir())


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    token: str | None
    output: str  # what it printed before it was ready

    def client(self, login: bool = True) -> httpx.Client:
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=60)
        if login:
            answer = client.get("/login", params={"token": self.token})
            assert answer.status_code == 303, answer.text
        return client

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(env: dict[str, str], index: Path, roots: list[Path], *, listen: str | None = None) -> Server:
    port = free_port()
    listen = listen or f"127.0.0.1:{port}"
    port = int(listen.rpartition(":")[2])
    args = [sys.executable, "-m", "tagd", "--index", str(index), "web", *map(str, roots), "--listen", listen]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    lines = []
    token = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"login\?token=(\S+)", line)
        if found:
            token = found.group(1)
        if "tagd web: open" in line:
            break
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    if process.poll() is not None:
        rest = process.stdout.read()
        raise AssertionError(f"tagd web exited {process.returncode}: {''.join(lines)}{rest}")
    # Keep reading what it prints, so that a full pipe never blocks the server.
    threading.Thread(target=lambda: [lines.append(x) for x in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    return Server(process, url, token, "".join(lines))
