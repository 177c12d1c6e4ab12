"""`search`, `show`, `similar`, `stats` as a user runs them: exit codes, output formats, start-up cost.
(tagd.cli.queries; the same parser and exit codes as every other command.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tagd.index.db import Index, IndexedTag, PhotoRecord

REPO = Path(__file__).resolve().parent.parent
VOCAB = [("animal", [], []), ("cat", ["animal"], ["kitty"]), ("dog", ["animal"], []), ("sofa", [], ["couch"])]
HEAVY = ("numpy", "onnxruntime", "PIL", "tagd.model", "tagd.tagger", "pydantic")


def tagd_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagd", *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=dict(os.environ))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tagd", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, **(env or {})},
    )


@pytest.fixture
def library(tmp_path: Path) -> Path:
    path = tmp_path / "index.sqlite3"
    T = IndexedTag
    with Index(path) as ix:
        ix.set_vocabulary(VOCAB)
        ix.upsert_photos([
            PhotoRecord(Path("/pics/cat.jpg"), "a" * 64, 2_000_000, 1, 4032, 3024, datetime(2024, 6, 15, 10, 0, 1), "Google Pixel 7",
                        model_version="effnet@0123", tagged_at=datetime(2025, 1, 2, 3, 4, 5),
                        tags=[T("cat", 0.96, "model", "kept"), T("animal", 0.98, "model", "kept"), T("sofa", 0.05, "model", "suggested")]),
            PhotoRecord(Path("/pics/dog.jpg"), "b" * 64, 1, 1, taken=datetime(2023, 1, 1),
                        tags=[T("dog", 0.8, "model", "kept"), T("Grandma", 1.0, "user", "added")]),
            PhotoRecord(Path("/pics/with space.jpg"), None, 1, 1, tags=[T("cat", 0.5, "model", "kept")]),
            PhotoRecord(Path("/pics/broken.jpg"), None, 48, 1, status="failed", error="cannot decode: image file is truncated"),
        ])
    return path


def test_search_prints_one_path_per_line(library: Path) -> None:
    proc = run("--index", str(library), "search", "animal")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["/pics/cat.jpg", "/pics/dog.jpg", "/pics/with space.jpg"]


def test_search_words_are_joined_and_options(library: Path) -> None:
    assert run("--index", str(library), "search", "cat", "-couch").stdout.splitlines() == ["/pics/cat.jpg", "/pics/with space.jpg"]
    assert run("--index", str(library), "search", "--suggestions", "cat", "-couch").stdout.splitlines() == ["/pics/with space.jpg"]
    assert run("--index", str(library), "search", "--sort", "path", "--limit", "2", "animal").stdout.splitlines() == ["/pics/cat.jpg", "/pics/dog.jpg"]
    assert run("--index", str(library), "search", "--sort", "taken", "animal").stdout.splitlines() == ["/pics/cat.jpg", "/pics/dog.jpg", "/pics/with space.jpg"]
    proc = run("--index", str(library), "search", "-0", "cat")
    assert proc.stdout == "/pics/cat.jpg\0/pics/with space.jpg\0"


def test_search_count_and_json(library: Path) -> None:
    proc = run("--index", str(library), "search", "--count", "animal")
    assert (proc.returncode, proc.stdout) == (0, "3\n")
    proc = run("--index", str(library), "search", "--json", "cat")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows == [
        {"path": "/pics/cat.jpg", "score": 0.96, "taken": "2024-06-15T10:00:01"},
        {"path": "/pics/with space.jpg", "score": 0.5, "taken": None},
    ]


def test_nothing_found_exits_1(library: Path) -> None:
    proc = run("--index", str(library), "search", "cat", "dog")  # known words, no photo has both
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "")
    proc = run("--index", str(library), "search", "--count", "cat", "dog")
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "0\n", "")


def test_nothing_found_names_the_words_no_tag_is_called(library: Path) -> None:
    """`dog or cat` (lowercase or) and `dgo` (a typo) exited 1 with no word of why."""
    proc = run("--index", str(library), "search", "dog", "or", "cat")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == "tagd search: no tag in the index is called 'or'; the operator is OR, in capitals\n"
    proc = run("--index", str(library), "search", "dgo")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == "tagd search: no tag in the index is called 'dgo'; did you mean 'dog'?\n"
    proc = run("--index", str(library), "search", "--count", "Grandmaa", "-unicorn")
    assert (proc.returncode, proc.stdout) == (1, "0\n")
    assert proc.stderr.splitlines() == [  # user tags and synonyms are known words too
        "tagd search: no tag in the index is called 'Grandmaa'; did you mean 'grandma'?",
        "tagd search: no tag in the index is called 'unicorn'",
    ]
    assert run("--index", str(library), "search", "kitty").returncode == 0  # a synonym: found, no hint


def test_syntax_error_exits_2_with_the_column(library: Path) -> None:
    proc = run("--index", str(library), "search", "dog beach NOT")
    assert proc.returncode == 2
    assert proc.stderr == "tagd search: col 14: expected a tag after NOT\n"
    assert proc.stdout == ""


def test_syntax_error_is_reported_even_without_an_index(tmp_path: Path) -> None:
    proc = run("--index", str(tmp_path / "none.sqlite3"), "search", "(dog")
    assert proc.returncode == 2 and "col 1: '(' is never closed" in proc.stderr


def test_missing_index_is_one_line(tmp_path: Path) -> None:
    proc = run("--index", str(tmp_path / "none.sqlite3"), "search", "dog")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "no index at" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "none.sqlite3").exists()


def test_index_path_from_config(library: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[index]\npath = "{library}"\n')
    assert run("--config", str(config), "search", "--count", "dog").stdout == "1\n"
    env = {"TAGD_INDEX__PATH": str(library), "XDG_CONFIG_HOME": str(tmp_path / "empty")}
    assert run("search", "--count", "dog", env=env).stdout == "1\n"


def test_show_text_and_json(library: Path) -> None:
    proc = run("--index", str(library), "show", "/pics/cat.jpg")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("/pics/cat.jpg\n")
    assert "status   tagged" in out and "effnet@0123, tagged 2025-01-02 03:04:05" in out
    assert "taken    2024-06-15 10:00:01" in out and "Google Pixel 7" in out and "4032x3024" in out
    lines = [line.split() for line in out.splitlines() if line.startswith("    ")]
    assert lines == [["animal", "0.98", "model", "kept"], ["cat", "0.96", "model", "kept"], ["sofa", "0.05", "model", "suggested"]]
    record = json.loads(run("--index", str(library), "show", "--json", "/pics/broken.jpg").stdout)
    assert record["status"] == "failed" and record["error"] == "cannot decode: image file is truncated"
    assert record["tags"] == []


def test_show_a_relative_path_and_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    (tmp_path / "pics").mkdir()
    with Index(path) as ix:
        ix.upsert_photos([PhotoRecord(tmp_path / "pics" / "cat.jpg", None, 1, 1, tags=[IndexedTag("cat", 0.9, "model", "kept")])])
    proc = subprocess.run(
        [sys.executable, "-m", "tagd", "--index", str(path), "show", "cat.jpg", "../pics/nope.jpg"],
        capture_output=True, text=True, cwd=tmp_path / "pics", env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"{tmp_path / 'pics' / 'cat.jpg'}\n")
    assert proc.stderr == "tagd show: ../pics/nope.jpg: not in the index\n"


def test_stats_text_and_json(library: Path) -> None:
    proc = run("--index", str(library), "stats")
    assert proc.returncode == 0, proc.stderr
    assert "photos      4: 3 tagged, 1 failed, 0 pending" in proc.stdout
    assert "/pics/broken.jpg: cannot decode: image file is truncated" in proc.stdout
    data = json.loads(run("--index", str(library), "stats", "--json").stdout)
    assert data["photos"]["failed"] == 1 and data["tags"]["top"][0] == {"name": "animal", "photos": 3}


def test_search_and_show_do_not_import_the_model_runtime(library: Path) -> None:
    for command in (["search", "cat"], ["search", "--json", "cat"], ["show", "/pics/cat.jpg"], ["stats"]):
        code = (
            "import sys; from tagd.cli import main\n"
            f"rc = main(['--index', {str(library)!r}, *{command!r}])\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules], rc)"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert proc.stdout.splitlines()[-1] == "[] 0", (command, proc.stdout, proc.stderr)


def test_paths_that_are_not_utf8_come_out_as_their_bytes(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = tmp_path / "index.sqlite3"
    with Index(path) as ix:
        ix.upsert_photos([PhotoRecord(Path("/pics/caf\udce9.jpg"), None, 1, 1, tags=[IndexedTag("cat", 0.9, "model", "kept")])])
    from tagd.cli import main

    assert main(["--index", str(path), "search", "cat"]) == 0
    assert capsysbinary.readouterr().out == b"/pics/caf\xe9.jpg\n"
    assert main(["--index", str(path), "search", "--json", "cat"]) == 0
    assert json.loads(capsysbinary.readouterr().out)["path"] == "/pics/caf\udce9.jpg"


@pytest.mark.slow
def test_similar_embeds_a_photo_that_is_not_indexed(tmp_path: Path, real_photo_dir: Path, tagger) -> None:  # noqa: ANN001
    names = ["chelsea", "coffee", "rocket", "astronaut", "china", "flower"]
    results = list(tagger.tag_paths([real_photo_dir / f"{n}.jpg" for n in names]))
    path = tmp_path / "index.sqlite3"
    with Index(path) as ix:
        ix.upsert_photos([
            PhotoRecord(r.path, None, 1, 1, tags=[IndexedTag(t.name, t.score, "model", "kept") for t in r.tags], embedding=r.embedding)
            for r in results
        ])
    # A second, slightly different cat photo: not in the index, embedded on the fly by the
    # configured tagger (loaded only then).
    from PIL import Image

    cat = tmp_path / "cat-crop.jpg"
    with Image.open(real_photo_dir / "chelsea.jpg") as im:
        im.crop((20, 10, im.width - 30, im.height - 5)).save(cat, quality=85)
    proc = tagd_cli("--index", str(path), "similar", "-k", "3", "--json", str(cat))
    assert proc.returncode == 0, proc.stderr
    hits = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(hits) == 3 and Path(hits[0]["path"]).name == "chelsea.jpg" and hits[0]["score"] > 0.8
    # An indexed photo: its stored embedding, and it does not list itself.
    proc = tagd_cli("--index", str(path), "similar", "-k", "2", str(real_photo_dir / "chelsea.jpg"))
    assert proc.returncode == 0, proc.stderr
    assert str(real_photo_dir / "chelsea.jpg") not in proc.stdout.splitlines() and len(proc.stdout.splitlines()) == 2
    proc = tagd_cli("--index", str(path), "similar", str(tmp_path / "missing.jpg"))
    assert (proc.returncode, proc.stderr) == (1, f"tagd similar: {tmp_path / 'missing.jpg'}: no such file\n")
    proc = tagd_cli("--index", str(path), "similar", str(tmp_path))
    assert (proc.returncode, proc.stderr) == (1, f"tagd similar: {tmp_path}: not a file (tagd similar takes one photo)\n")


def test_options_after_the_query(library: Path) -> None:
    proc = run("--index", str(library), "search", "--sort", "path", "animal", "-cat", "--limit", "5")
    assert proc.stdout.splitlines() == ["/pics/dog.jpg"]
    proc = run("--index", str(library), "search", "--sort", "path", "animal", "--limit=2")
    assert proc.stdout.splitlines() == ["/pics/cat.jpg", "/pics/dog.jpg"]  # --sort kept, --limit applied
    assert run("--index", str(library), "search", "animal", "--count").stdout == "3\n"
    assert run("--index", str(library), "search", "--", "-cat").stdout.splitlines() == ["/pics/broken.jpg", "/pics/dog.jpg"]
    proc = run("--index", str(library), "search", "--json", "animal", "--count")
    assert proc.returncode == 2 and "not allowed with" in proc.stderr
    assert run("--index", str(library), "search", "--count").stdout == "4\n"  # no query: every photo
