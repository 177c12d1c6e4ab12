"""The `tagd` command as a user runs it: a real subprocess, real files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def tagd(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tagd", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}, cwd=cwd,
    )


def test_tag_json_lines_with_a_bad_file(photos: Path) -> None:
    (photos / "broken.jpg").write_bytes((photos / "chelsea.jpg").read_bytes()[:300])
    proc = tagd("tag", "--json", str(photos))
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 8
    by_name = {Path(r["path"]).name: r for r in records}
    assert by_name["broken.jpg"]["error"] and by_name["broken.jpg"]["tags"] == []
    cat = by_name["chelsea.jpg"]
    assert cat["error"] is None
    assert {"name", "score", "source"} == set(cat["tags"][0])
    assert "cat" in [t["name"] for t in cat["tags"]]
    assert "broken.jpg" in proc.stderr


def test_tag_table_output_and_success_exit(real_photo_dir: Path) -> None:
    proc = tagd("tag", str(real_photo_dir / "chelsea.jpg"), str(real_photo_dir / "coffee.jpg"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    path, tags = lines[0].split("\t", 1)
    assert path == str(real_photo_dir / "chelsea.jpg") and " cat " in f" {tags} "


def test_tag_never_writes(photos: Path) -> None:
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in photos.iterdir()}
    assert tagd("tag", str(photos)).returncode == 0
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in photos.iterdir()} == before


def test_tag_walks_raw_files_in_folders(photos: Path, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "2024"
    folder.mkdir()
    (folder / "x.jpg").write_bytes((photos / "coffee.jpg").read_bytes())
    for name in ("IMG_0001.CR2", "IMG_0002.dng"):  # TIFFs named like RAW: Pillow decodes them
        with Image.open(photos / "chelsea.jpg") as im:
            im.save(folder / name, "TIFF")
    (folder / "IMG_0003.NEF").write_bytes(b"not a photo")
    proc = tagd("tag", "--json", str(folder))
    assert proc.returncode == 1  # the undecodable NEF
    records = {Path(r["path"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert sorted(records) == ["IMG_0001.CR2", "IMG_0002.dng", "IMG_0003.NEF", "x.jpg"]
    for name in ("IMG_0001.CR2", "IMG_0002.dng"):
        assert records[name]["error"] is None and "cat" in [t["name"] for t in records[name]["tags"]]
    assert records["IMG_0003.NEF"]["error"] and "IMG_0003.NEF" in proc.stderr


def test_no_photos_found(tmp_path: Path) -> None:
    proc = tagd("tag", str(tmp_path))
    assert proc.returncode == 1 and "no photos found" in proc.stderr


def test_help_lists_every_command() -> None:
    proc = tagd("--help")
    assert proc.returncode == 0
    for name in ("run", "scan", "tag", "search", "show", "similar", "revert", "stats", "config"):
        assert name in proc.stdout
    assert "--config" in proc.stdout and "--index" in proc.stdout


@pytest.mark.parametrize("command", ["run", "scan"])
def test_missing_folder_is_refused_at_start(command: str, tmp_path: Path) -> None:
    """run and scan refuse a folder that is not there alike: a usage error (2), one line."""
    (tmp_path / "here").mkdir()
    proc = tagd(command, str(tmp_path / "here"), str(tmp_path / "nope"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"tagd {command}: not a folder: {tmp_path / 'nope'}\n")
    config = tmp_path / "config.toml"
    config.write_text(f'[watch]\nroots = ["{tmp_path / "gone"}"]\n')
    proc = tagd("--config", str(config), command)
    assert (proc.returncode, proc.stderr) == (2, f"tagd {command}: not a folder: {tmp_path / 'gone'}\n")
    config.write_text("[watch]\nroots = []\n")
    proc = tagd("--config", str(config), command)
    verb = "watch" if command == "run" else "scan"
    assert (proc.returncode, proc.stderr) == (
        2, f"tagd {command}: nothing to {verb}: give folders (`tagd {command} ~/Pictures`) or set watch.roots in the config\n")


def test_config_show_documents_every_key() -> None:
    proc = tagd("config", "show")
    assert proc.returncode == 0
    keys = [line.split(" = ")[0] for line in proc.stdout.splitlines() if not line.startswith(" ")]
    descriptions = [line for line in proc.stdout.splitlines() if line.startswith("    ")]
    assert "watch.settle_s" in keys and "refine.mode" in keys and len(descriptions) == len(keys)
    assert all(d.strip() for d in descriptions)


def test_invalid_config_names_the_key(tmp_path: Path, real_photo_dir: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[model]\nbatch_size = 0\n")
    proc = tagd("--config", str(config), "tag", str(real_photo_dir / "chelsea.jpg"))
    assert proc.returncode == 1
    assert "model.batch_size" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_model_bundle_is_one_line(tmp_path: Path, real_photo_dir: Path) -> None:
    proc = tagd("tag", "--model", str(tmp_path), str(real_photo_dir / "chelsea.jpg"))
    assert proc.returncode == 1
    assert "no bundle.json" in proc.stderr and "Traceback" not in proc.stderr


def test_query_commands_do_not_import_the_model_runtime(tmp_path: Path) -> None:
    """`tagd search`/`show`/`stats` through the whole CLI, on a real index (found by --index or
    by the config), run to the end without loading onnxruntime, numpy, Pillow or the model."""
    from tagd.index.db import Index, IndexedTag, PhotoRecord

    index = tmp_path / "index.sqlite3"
    with Index(index) as ix:
        ix.set_vocabulary([("animal", [], []), ("dog", ["animal"], [])])
        ix.upsert_photos([PhotoRecord(Path("/pics/dog.jpg"), "a" * 64, 1, 1, tags=[IndexedTag("dog", 0.9, "model", "kept")])])
    config = tmp_path / "config.toml"
    config.write_text(f'[index]\npath = "{index}"\n')
    for argv, expected in ((["--index", str(index), "search", "animal"], "/pics/dog.jpg\n"),
                           (["--config", str(config), "search", "dog"], "/pics/dog.jpg\n"),
                           (["--index", str(index), "show", "/pics/dog.jpg"], "status   tagged"),
                           (["stats", "--index", str(index)], "photos      1: 1 tagged")):
        code = (
            "import sys; from tagd.cli import main\n"
            f"rc = main({argv!r})\n"
            "heavy = [m for m in ('onnxruntime', 'numpy', 'PIL', 'tagd.model') if m in sys.modules]\n"
            "print('heavy:', ','.join(heavy), 'rc:', rc)"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert expected in proc.stdout, (argv, proc.stdout, proc.stderr)  # it did its work ...
        assert proc.stdout.splitlines()[-1] == "heavy:  rc: 0", (argv, proc.stdout, proc.stderr)  # ... light


def tagd_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """`tagd` with stdout on a pseudo-terminal, as a person runs it: (status, terminal, stderr)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tagd", *args], stdout=slave, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    stderr = proc.stderr.read().decode()
    return proc.wait(timeout=300), screen.decode().replace("\r\n", "\n"), stderr


def test_a_tag_error_is_printed_once_in_a_terminal(photos: Path) -> None:
    """Each error came twice, its row on stdout and a warning on stderr, on one screen."""
    broken = photos / "broken.jpg"
    broken.write_bytes((photos / "chelsea.jpg").read_bytes()[:300])
    status, screen, stderr = tagd_on_a_terminal("tag", str(broken), str(photos / "coffee.jpg"))
    assert status == 1
    assert screen.count("broken.jpg") == 1 and screen.startswith(f"{broken}\tERROR cannot decode")
    assert "broken.jpg" not in stderr, stderr
    status, screen, stderr = tagd_on_a_terminal("-v", "tag", str(broken))
    assert status == 1 and "broken.jpg" in stderr  # asked for more: there it is
    proc = tagd("tag", str(broken))  # stdout redirected: the errors still reach the terminal
    assert proc.stdout.count("broken.jpg") == 1 and proc.stderr.count("broken.jpg") == 1


def test_tag_help_does_not_call_the_write_command_read_only() -> None:
    """`tag --help` said "Read-only: nothing is written" right above --write."""
    proc = tagd("tag", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "Read-only" not in text and "Without --write nothing is written; with --write the tags also go into" in text
