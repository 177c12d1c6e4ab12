"""The README's first command, as a new user runs it: `scripts/install FOLDER` with a fresh HOME
installs tagd (non-editable, from constraints.txt), puts `tagd` in ~/.local/bin and tags the folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_scripts_install_installs_links_and_tags(real_photo_dir: Path, tmp_path: Path) -> None:
    if not shutil.which("exiftool"):
        pytest.skip("exiftool missing: scripts/install would apt-get it")
    home = tmp_path / "home"
    pictures = home / "Pictures"
    pictures.mkdir(parents=True)
    shutil.copy(real_photo_dir / "chelsea.jpg", pictures / "chelsea.jpg")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(HOME=str(home), PATH="/usr/local/bin:/usr/bin:/bin")
    proc = subprocess.run([str(ROOT / "scripts" / "install"), str(pictures)], capture_output=True, text=True,
                          env=env, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    link = home / ".local" / "bin" / "tagd"
    assert link.is_symlink() and Path(os.readlink(link)) == home / ".local" / "share" / "tagd" / "venv" / "bin" / "tagd"
    assert "is not on your PATH" in proc.stderr  # this PATH lacks ~/.local/bin: it says how to add it
    line, = proc.stdout.splitlines()
    path, tags = line.split("\t")
    assert path == str(pictures / "chelsea.jpg") and "cat" in tags
    # Not an editable install: the package (and its models) live in the venv, not in this checkout.
    where = subprocess.run([str(link), "config", "show"], capture_output=True, text=True, env=env)
    assert where.returncode == 0, where.stderr
    freeze = subprocess.run([str(home / ".local/share/tagd/venv/bin/python"), "-m", "pip", "freeze"],
                            capture_output=True, text=True, env=env).stdout
    pinned = {l.split("==")[0].lower(): l for l in (ROOT / "constraints.txt").read_text().splitlines() if "==" in l}
    for line in freeze.splitlines():
        name = line.split("==")[0].lower()
        if name in pinned:
            assert line.replace("+cpu", "") == pinned[name], f"{line} is not the pinned {pinned[name]}"
    assert "tagd @ file://" in freeze and "-e " not in freeze
    # The scale-out extras stay out of the default install (tagd[postgres], tagd[ray]).
    installed = {line.split("==")[0].lower() for line in freeze.splitlines()}
    assert not installed & {"psycopg", "psycopg-binary", "ray"}, installed
