"""The unit files in systemd/ pass `systemd-analyze verify` (Debian package `systemd`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)")


def tagd_executable() -> Path:
    exe = Path(sys.prefix) / "bin" / "tagd"
    if not exe.exists():
        pytest.skip("the tagd console script is not installed in this environment")
    return exe


def verify(unit: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, *extra, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice", **(env or {})})


def test_system_unit(tmp_path: Path) -> None:
    text = (REPO / "systemd" / "tagd.service").read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "ProtectSystem=strict" in text
    # verify checks that ExecStart exists: point it at this environment's tagd, change nothing else.
    unit = tmp_path / "tagd.service"
    unit.write_text(text.replace("/opt/tagd/venv/bin/tagd", str(tagd_executable())))
    proc = verify(unit)
    assert proc.returncode == 0, proc.stderr
    assert "tagd.service" not in proc.stderr, proc.stderr  # no warnings about our unit


def verify_user_unit(tmp_path: Path, source: str, name: str) -> None:
    """`systemd-analyze --user verify` on a user unit, with this environment's tagd where the
    unit expects it (~/.local/share/tagd/venv/bin/tagd)."""
    home = tmp_path / "home"
    bin_dir = home / ".local" / "share" / "tagd" / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "tagd").symlink_to(tagd_executable())
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    unit = tmp_path / name
    unit.write_text((REPO / "systemd" / source).read_text())
    proc = verify(unit, "--user", env={"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)})
    assert proc.returncode == 0, proc.stderr
    assert name not in proc.stderr, proc.stderr  # no warnings about our unit


def test_user_unit(tmp_path: Path) -> None:
    verify_user_unit(tmp_path, "tagd-user.service", "tagd.service")


def test_web_user_unit(tmp_path: Path) -> None:
    assert "ExecStart=%h/.local/share/tagd/venv/bin/tagd web\n" in (REPO / "systemd" / "tagd-web-user.service").read_text()
    verify_user_unit(tmp_path, "tagd-web-user.service", "tagd-web.service")
