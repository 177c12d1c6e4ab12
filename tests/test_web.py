"""`tagd web` over HTTP: the real command in a subprocess, real photos tagged by `tagd scan`,
exiftool as the reader of what review writes. The browser-driven tests are in test_web_browser.py."""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tagd.index.db import Index
from tagd.web.auth import AuthError, check_password, hash_password, load_password_hash
from test_refine_wiring import needs_exiftool, subject, tagd_namespace
from web_harness import environment, make_library, start, tagd

pytestmark = needs_exiftool


@pytest.fixture(scope="module")
def library(real_photo_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(env, index, root, outside, server): seven real photos tagged under `root`, one more
    indexed outside the served root, and `tagd web root` running."""
    base = tmp_path_factory.mktemp("web")
    env = environment(base / "home")
    index = base / "index.sqlite3"
    root = base / "Pictures"
    make_library(real_photo_dir, root, index, env)
    outside = base / "elsewhere"
    outside.mkdir()
    shutil.copyfile(real_photo_dir / "flower.jpg", outside / "secret.jpg")
    assert tagd(env, "--index", str(index), "scan", str(outside)).returncode == 0
    server = start(env, index, [root])
    yield env, index, root, outside, server
    server.stop()


def photo_id(index: Path, path: Path) -> int:
    with Index(index, readonly=True) as ix:
        return ix.read(lambda conn: conn.execute("SELECT id FROM photo WHERE path = ?", (str(path),)).fetchone()[0])


def csrf_of(client: httpx.Client, page: str = "/") -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get(page).text)
    assert found
    return found.group(1)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- access --------------------------------------------------------------------------------------


def test_the_token_is_printed_and_stored_for_the_owner_only(library) -> None:
    env, _, _, _, server = library
    token_file = Path(env["XDG_STATE_HOME"]) / "tagd" / "web-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == server.token
    assert f"login?token={server.token}" in server.output


def test_nothing_is_served_without_logging_in(library) -> None:
    _, index, root, _, server = library
    pid = photo_id(index, root / "chelsea.jpg")
    anonymous = server.client(login=False)
    page = anonymous.get("/")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert anonymous.get(f"/photo/{pid}").status_code == 303
    assert anonymous.get(f"/thumb/{pid}").status_code == 401
    assert anonymous.get(f"/preview/{pid}").status_code == 401
    assert anonymous.post("/review", data={"ids": pid, "tag": "cat", "verdict": "reject"}).status_code == 401
    wrong = anonymous.get("/login", params={"token": "not-the-token"})
    assert wrong.status_code == 401 and "tagd_session" not in str(wrong.cookies)
    assert anonymous.post("/login", data={"secret": "guess"}).status_code == 401


def test_a_forged_cross_site_post_is_refused_and_the_photo_is_untouched(library) -> None:
    _, index, root, _, server = library
    photo = root / "chelsea.jpg"
    pid, before = photo_id(index, photo), sha(photo)
    client = server.client()
    csrf = csrf_of(client)
    form = {"ids": str(pid), "tag": "cat", "verdict": "reject", "next": "/"}
    assert client.post("/review", data=form).status_code == 403  # no token
    assert client.post("/review", data={**form, "csrf": "x" * 43}).status_code == 403  # a wrong one
    assert client.post("/review", data={**form, "csrf": csrf}, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/review", data={**form, "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert sha(photo) == before and "cat" in subject(photo)


@pytest.mark.parametrize("url", [
    "/photo/../../../../etc/passwd", "/thumb/..%2f..%2f..%2fetc%2fpasswd", "/static/../app.py",
    "/static/%2e%2e/%2e%2e/cli.py", "/static/..%2fapp.py", "//etc/passwd", "/thumb//etc/passwd",
    "/preview/%2fetc%2fpasswd", "/photo/1%2f..%2f2", "/thumb/-1", "/thumb/99999", "/thumb/99999999999999999999999",
])
def test_a_path_that_tries_to_leave_gets_404(library, url: str) -> None:
    _, _, _, _, server = library
    answer = server.client().get(url)
    assert answer.status_code == 404, (url, answer.status_code, answer.text[:200])
    assert b"root:" not in answer.content and b"def " not in answer.content


def test_a_photo_outside_the_served_roots_is_never_served(library) -> None:
    _, index, _, outside, server = library
    pid = photo_id(index, outside / "secret.jpg")  # in the index, but not under a served root
    client = server.client()
    for url in (f"/photo/{pid}", f"/thumb/{pid}", f"/preview/{pid}"):
        assert client.get(url).status_code == 404, url
    gallery = client.get("/").text
    assert "secret.jpg" not in gallery


def test_a_photo_replaced_by_a_symlink_to_outside_is_not_served(library, tmp_path: Path) -> None:
    env, index, root, outside, server = library
    victim = root / "link-victim.jpg"
    shutil.copyfile(root / "rocket.jpg", victim)
    assert tagd(env, "--index", str(index), "scan", str(root)).returncode == 0
    pid = photo_id(index, victim)
    client = server.client()
    assert client.get(f"/photo/{pid}").status_code == 200
    victim.unlink()
    victim.symlink_to(outside / "secret.jpg")
    try:
        for url in (f"/photo/{pid}", f"/thumb/{pid}", f"/preview/{pid}"):
            assert client.get(url).status_code == 404, url
    finally:
        victim.unlink()
        assert tagd(env, "--index", str(index), "scan", str(root)).returncode == 0


def test_a_non_loopback_address_needs_a_password(library, tmp_path: Path) -> None:
    env, index, root, _, _ = dict(library[0]), *library[1:]
    env = {**env, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    refused = tagd(env, "--index", str(index), "web", str(root), "--listen", "0.0.0.0:1")
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("tagd web: listening on 0.0.0.0 lets other machines reach tagd: set a password "
                                      "first (tagd web --set-password), or listen on 127.0.0.1")
    assert tagd(env, "web", "--set-password", stdin="short\n").returncode == 1
    assert tagd(env, "web", "--set-password", stdin="correct horse battery\n").returncode == 0
    stored = tmp_path / "config" / "tagd" / "web-password"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stored.read_text().startswith("scrypt$32768$8$1$")
    from web_harness import free_port

    server = start(env, index, [root], listen=f"0.0.0.0:{free_port()}")
    try:
        assert server.token is None and "warning: listening on 0.0.0.0" in server.output
        client = server.client(login=False)
        assert client.post("/login", data={"secret": "wrong horse battery"}).status_code == 401
        ok = client.post("/login", data={"secret": "correct horse battery", "next": "/stats"})
        assert ok.status_code == 303 and ok.headers["location"] == "/stats"
        assert client.get("/stats").status_code == 200
    finally:
        server.stop()


def test_without_an_index_or_a_folder_it_says_what_to_do(tmp_path: Path, library) -> None:
    env, _, root, _, _ = library
    missing = tagd(env, "--index", str(tmp_path / "none.sqlite3"), "web", str(root))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"tagd web: no index at {tmp_path / 'none.sqlite3'} yet: run `tagd scan {root}` or the daemon first"
    no_roots = tagd({**env, "XDG_CONFIG_HOME": str(tmp_path)}, "web")
    assert no_roots.returncode == 1 and "no folders to serve: give them (tagd web ~/Pictures)" in no_roots.stderr


def test_password_hashes(tmp_path: Path) -> None:
    stored = hash_password("a long passphrase")
    assert check_password("a long passphrase", stored) and not check_password("a long passphrasE", stored)
    assert hash_password("a long passphrase") != stored  # salted
    path = tmp_path / "web-password"
    path.write_text(stored)
    path.chmod(0o644)
    with pytest.raises(AuthError, match="readable or writable by others"):
        load_password_hash(path)
    path.chmod(0o600)
    assert load_password_hash(path) == stored


# -- pages ---------------------------------------------------------------------------------------


def test_search_says_what_it_understood_and_when_nothing_matches(library) -> None:
    _, index, root, _, server = library
    client = server.client()
    found = client.get("/search", params={"q": "cat"})
    assert found.status_code == 200
    assert f'href="/photo/{photo_id(index, root / "chelsea.jpg")}"' in found.text
    assert re.search(r'1 photo for <code class="parsed">cat</code>', found.text)
    none = client.get("/search", params={"q": "elephnt"}).text
    assert "No photos match <q>elephnt</q>" in none and "no tag in the index is called &#39;elephnt&#39;" in none
    bad = client.get("/search", params={"q": "(cat"})
    assert bad.status_code == 400 and "Cannot read the query" in bad.text


def test_the_photo_page_shows_tags_with_score_source_decision_and_regions(library) -> None:
    _, index, root, _, server = library
    page = server.client().get(f"/photo/{photo_id(index, root / 'astronaut.jpg')}").text
    row = re.search(r'<tr class="state-added" data-tag="person">(.*?)</tr>', page, re.S)
    assert row and "model" in row.group(1) and "added by tagd" in row.group(1)
    assert re.search(r'class="region" style="left: [\d.]+%; top: [\d.]+%; width: [\d.]+%; height: [\d.]+%"><span>person', page)
    assert str(root / "astronaut.jpg") in page


def test_thumbnails_are_cached_by_content_and_upright(library, tmp_path: Path) -> None:
    env, index, root, _, server = library
    turned = root / "turned.jpg"
    im = Image.open(root / "coffee.jpg")  # 600 x 400
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": a portrait photo stored lying on its side
    im.save(turned, exif=exif.tobytes(), quality=92)
    assert tagd(env, "--index", str(index), "scan", str(root)).returncode == 0
    client = server.client()
    thumb = client.get(f"/thumb/{photo_id(index, turned)}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    from io import BytesIO

    small = Image.open(BytesIO(thumb.content))
    assert small.height == 320 and small.width == round(320 * 400 / 600)
    cached = Path(env["XDG_CACHE_HOME"]) / "tagd" / "thumbnails" / sha(turned)[:2] / f"{sha(turned)}-320.jpg"
    assert cached.read_bytes() == thumb.content


def test_stats_list_refused_photos_with_their_reason(library) -> None:
    env, index, root, _, server = library
    broken = root / "broken.jpg"
    broken.write_bytes((root / "china.jpg").read_bytes()[:3000])
    tagd(env, "--index", str(index), "scan", str(root))
    try:
        page = server.client().get("/stats").text
        assert str(broken) in page and "cannot decode" in page
        assert re.search(r"\d+ photos: \d+ tagged, 1 failed", page)
    finally:
        broken.unlink()
        tagd(env, "--index", str(index), "scan", str(root))


# -- review --------------------------------------------------------------------------------------


def test_add_rename_and_undo_on_a_selection_reach_the_files_and_revert_stays_exact(library, tmp_path: Path) -> None:
    env, index, root, _, server = library
    photos = [root / "flower.jpg", root / "china.jpg"]
    originals = {p: subject(p) for p in photos}
    ids = [photo_id(index, p) for p in photos]
    client = server.client()
    csrf = csrf_of(client)

    added = client.post("/review", data={"csrf": csrf, "ids": ids, "tag": "Holiday 2024", "verdict": "add", "next": "/"})
    assert added.status_code == 303
    assert all("Holiday 2024" in subject(p) for p in photos)
    page = client.get("/").text
    assert "Added Holiday 2024 on 2 photos." in page and "Undo: added Holiday 2024" in page
    with Index(index, readonly=True) as ix:
        assert ix.count('"Holiday 2024"') == 2
        assert ("Holiday 2024", "user", "kept") in {(t.name, t.source, t.state) for t in ix.get(photos[0]).tags}

    renamed = client.post("/rename", data={"csrf": csrf, "old": "Holiday 2024", "new": "Crete"})
    assert renamed.status_code == 303 and renamed.headers["location"] == "/tag?name=Crete"
    assert all("Crete" in subject(p) and "Holiday 2024" not in subject(p) for p in photos)
    assert "Renamed Holiday 2024 to Crete on 2 photos." in client.get("/tag", params={"name": "Crete"}).text

    assert client.post("/undo", data={"csrf": csrf, "next": "/"}).status_code == 303
    assert all("Holiday 2024" in subject(p) and "Crete" not in subject(p) for p in photos)
    with Index(index, readonly=True) as ix:
        assert ix.count('"Holiday 2024"') == 2 and ix.count("Crete") == 0

    # The daemon would see nothing to do: the index matches each file as it is now.
    with Index(index, readonly=True) as ix:
        for p in photos:
            record = ix.get(p, embedding=False)
            assert (record.size, record.mtime_ns, record.content_hash) == (p.stat().st_size, p.stat().st_mtime_ns, sha(p))

    assert client.post("/undo", data={"csrf": csrf, "next": "/"}).status_code == 303
    client.post("/rename", data={"csrf": csrf, "old": "no such tag", "new": "other"})
    assert "Renamed no such tag to other: no photo had it, nothing changed." in client.get("/").text
    assert subject(photos[0]) == originals[photos[0]] and subject(photos[1]) == originals[photos[1]]
    reverted = tagd(env, "--index", str(index), "revert", str(photos[0]))
    assert reverted.returncode == 0, reverted.stderr
    assert subject(photos[0]) == [] and tagd_namespace(photos[0]) == {}  # the copies had no keywords before tagd


def test_undo_leaves_a_photo_alone_when_its_keywords_changed_since(library) -> None:
    _, index, root, _, server = library
    photo = root / "rocket.jpg"
    client = server.client()
    csrf = csrf_of(client)
    client.post("/review", data={"csrf": csrf, "ids": photo_id(index, photo), "tag": "launch", "verdict": "add"})
    import subprocess

    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-dc:Subject+=mine", str(photo)], check=True)
    before = sha(photo)
    client.post("/undo", data={"csrf": csrf, "next": "/"})
    assert sha(photo) == before
    assert "rocket.jpg: its keywords changed since; left as they are" in client.get("/").text


def test_a_raw_file_is_shown_by_its_embedded_preview_turned_upright(real_photo_dir: Path, tmp_path: Path) -> None:
    """A camera RAW file: Pillow cannot decode it, so the thumbnail is the JPEG preview the camera
    embedded, extracted by exiftool and turned by the RAW's orientation. (No RAW encoder exists in
    Debian: the file here is a JPEG whose EXIF carries a different photo as its preview, named
    .nef, which takes the RAW path: the preview, not the main image, must come out, upright.)"""
    import subprocess
    from io import BytesIO

    import numpy as np

    from tagd.web.thumbs import render

    preview = tmp_path / "preview.jpg"
    Image.open(real_photo_dir / "coffee.jpg").resize((160, 106)).save(preview, quality=90)  # landscape
    made = tmp_path / "made.jpg"
    Image.new("RGB", (640, 480), (0, 0, 255)).save(made, format="JPEG")  # the "sensor data": blue
    subprocess.run(["exiftool", "-q", "-overwrite_original", f"-ThumbnailImage<={preview}", "-Orientation#=6", str(made)],
                   check=True)
    raw = made.rename(tmp_path / "DSC_0001.nef")
    shown = Image.open(BytesIO(render(raw, 320)))
    assert shown.size == (106, 160)  # the 160 x 106 preview, turned upright: portrait
    upright = Image.open(preview).transpose(Image.Transpose.ROTATE_270)
    diff = np.abs(np.asarray(shown, dtype=int) - np.asarray(upright, dtype=int)).mean()
    assert diff < 12, diff  # the coffee, not the blue main image


def test_a_review_while_the_daemon_runs_is_kept_and_not_re_tagged(real_photo_dir: Path, tmp_path: Path) -> None:
    """The daemon watches the folder while the web app writes a photo: it sees the change, finds
    the index up to date with the file, and leaves the user's verdict alone."""
    import time

    from daemon_harness import TAGGED_LINE, DaemonProcess, index_rows, wait_until, write_config

    root = tmp_path / "Pictures"
    root.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        shutil.copyfile(real_photo_dir / name, root / name)
    index = tmp_path / "index.sqlite3"
    env = environment(tmp_path / "home")
    config = write_config(tmp_path / "config.toml", settle_s=0.5)
    cat = root / "chelsea.jpg"
    with DaemonProcess(tmp_path, [root], config=config, index=index, env=env) as daemon:
        daemon.wait_ready()
        wait_until(lambda: sum(r["status"] == "tagged" for r in index_rows(index).values()) == 3, 120, "3 photos tagged")
        assert "cat" in subject(cat)
        server = start(env, index, [root])
        try:
            client = server.client()
            before = len(TAGGED_LINE.findall(daemon.log()))
            answer = client.post("/review", data={"csrf": csrf_of(client), "ids": photo_id(index, cat), "tag": "cat",
                                                  "verdict": "reject", "next": "/"})
            assert answer.status_code == 303
            written = sha(cat)
            time.sleep(4)  # settle_s 0.5 and a batch, several times over
            assert len(TAGGED_LINE.findall(daemon.log())) == before, daemon.tail()
            assert sha(cat) == written and "cat" not in subject(cat)
            assert index_rows(index)[str(cat)]["status"] == "tagged"
            with Index(index, readonly=True) as ix:
                assert ("model", "rejected") == next((t.source, t.state) for t in ix.get(cat).tags if t.name == "cat")
        finally:
            server.stop()
