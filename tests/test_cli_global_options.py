"""--index and --config before or after the command, for every command: the README promises both.

`tagd search dog --index X` once searched the default index for "dog --index X". Each command here
runs as a real subprocess with the options on one side of the command and then on the other, and
the test looks at which index file (real SQLite) and which config (its visible effect) it used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_harness import DaemonProcess, index_rows, write_config
from tagd.index.db import Index

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")]


class Cli:
    """`tagd` with the global options before the command or after everything else."""

    def __init__(self, where: str, home: Path) -> None:
        self.where = where
        # The defaults (config and index under XDG) are empty folders: any use of them shows.
        self.env = {**os.environ, "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config")}
        self.default_index = home / "data" / "tagd" / "index.sqlite3"

    def argv(self, command: list[str], options: list[str]) -> list[str]:
        return [*options, *command] if self.where == "before" else [*command, *options]

    def __call__(self, command: list[str], options: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tagd", *self.argv(command, options)], capture_output=True,
                              text=True, timeout=300, env=self.env)

    def ok(self, command: list[str], options: list[str]) -> str:
        proc = self(command, options)
        assert proc.returncode == 0, (self.argv(command, options), proc.stdout, proc.stderr)
        return proc.stdout


def tags_of(index: Path, photo: Path, state: str = "added") -> list[str]:
    with Index(index, readonly=True) as ix:
        record = ix.get(photo, embedding=False)
    assert record is not None, f"{photo} not in {index}"
    return [t.name for t in record.tags if t.state == state]


def reverted(index: Path, photo: Path) -> bool:
    with Index(index, readonly=True) as ix:
        record = ix.get(photo, embedding=False)
    return record is not None and record.reverted


@pytest.mark.parametrize("where", ["before", "after"])
def test_index_and_config_reach_every_command(where: str, real_photo_dir: Path, tmp_path: Path) -> None:
    tagd = Cli(where, tmp_path / "home")
    folders = {}
    for name, photos in {"first": ["chelsea", "coffee"], "scanned": ["rocket"], "watched": ["flower"]}.items():
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for photo in photos:
            shutil.copyfile(real_photo_dir / f"{photo}.jpg", folders[name] / f"{photo}.jpg")
    cat, coffee = folders["first"] / "chelsea.jpg", folders["first"] / "coffee.jpg"
    index, decoy = tmp_path / "index.sqlite3", tmp_path / "decoy.sqlite3"
    # `decoy`: the config names an index that --index overrides; `real`: the config's index is the one.
    decoy_config = tmp_path / "decoy.toml"
    decoy_config.write_text(f'[model]\nmax_tags = 1\n[index]\npath = "{decoy}"\n')
    real_config = tmp_path / "real.toml"
    real_config.write_text(f'[model]\nmax_tags = 1\n[index]\npath = "{index}"\n')
    both = ["--index", str(index), "--config", str(decoy_config)]
    by_index, by_config = ["--index", str(index)], ["--config", str(real_config)]

    # tag: read-only, opens no index; the config's max_tags = 1 shows in the output.
    rows = [json.loads(line) for line in tagd.ok(["tag", "--json", str(folders["first"])], both).splitlines()]
    assert [len(r["tags"]) for r in rows] == [1, 1] and not index.exists()

    # tag --write: the photos land in --index, with one tag each (max_tags = 1).
    tagd.ok(["tag", "--write", str(folders["first"])], both)
    assert len(tags_of(index, cat)) == 1 and len(tags_of(index, coffee)) == 1

    # config: shows what the others use.
    shown = tagd.ok(["config", "show"], both)
    assert f'index.path = "{index}"' in shown and "model.max_tags = 1" in shown
    assert tagd.ok(["config", "check"], ["--config", str(decoy_config)]).startswith(f"configuration OK ({decoy_config})")

    # search, show, similar, stats read --index, or the index the config names.
    for options in (by_index, by_config):
        cat_tag = tags_of(index, cat)[0]
        assert tagd.ok(["search", cat_tag], options) == f"{cat}\n"
        assert tagd.ok(["search", "--count", "tag:*", f"-{cat_tag}"], options) == "1\n"  # a word starting with -
        assert json.loads(tagd.ok(["show", "--json", str(cat)], options))["path"] == str(cat)
        assert tagd.ok(["similar", "-k", "1", str(cat)], options) == f"{coffee}\n"
        assert json.loads(tagd.ok(["stats", "--json"], options))["photos"]["tagged"] == 2

    # revert records in --index, or in the config's index.
    tagd.ok(["revert", str(cat)], by_index)
    assert reverted(index, cat)
    tagd.ok(["tag", "--write", str(cat)], by_index)
    assert not reverted(index, cat)
    tagd.ok(["revert", str(cat)], by_config)
    assert reverted(index, cat)

    # scan and run: into --index, with the config's settings.
    tagd.ok(["scan", str(folders["scanned"])], both)
    assert len(tags_of(index, folders["scanned"] / "rocket.jpg")) == 1
    run_config = write_config(tmp_path / "run.toml", extra=f'max_tags = 1\n[index]\npath = "{decoy}"')
    run_options = ["--index", str(index), "--config", str(run_config)]
    argv = tagd.argv(["run", str(folders["watched"])], run_options)
    with DaemonProcess(tmp_path, config=run_config, index=index, env=tagd.env, argv=argv) as daemon:
        daemon.wait_for(lambda: str(folders["watched"] / "flower.jpg") in index_rows(index), 90, "the watched photo indexed")
        assert daemon.terminate()[0] == 0
    assert len(tags_of(index, folders["watched"] / "flower.jpg")) == 1

    assert not decoy.exists() and not tagd.default_index.exists()
