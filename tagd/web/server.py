"""Starting `tagd web` (the command line is tagd.cli.web's): the app with its settings, the
address, the password read from the terminal."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from tagd.errors import TagdError


class WebError(TagdError):
    """`tagd web` cannot start: the reason says what to do."""


def new_token_if(loopback: bool) -> str | None:
    from tagd.web.auth import new_token

    return new_token() if loopback else None


def build_app(settings, index_path: Path, roots: list[Path], *, token: str | None, password_hash: str | None,  # noqa: ANN001
              port: int):  # noqa: ANN201 - starlette.Starlette
    from tagd.pipeline import make_writer
    from tagd.web.app import WebConfig, create_app
    from tagd.web.auth import Credentials
    from tagd.web.thumbs import Thumbnails

    config = WebConfig(
        index_path=index_path,
        roots=roots,
        credentials=Credentials(token, password_hash),
        make_writer=lambda: make_writer(settings),
        thumbnails=Thumbnails(max_pixels=settings.model.max_decode_pixels),
        page_size=settings.web.page_size,
        thumbnail_px=settings.web.thumbnail_px,
        cookie_name=f"tagd_session_{port}",  # cookies ignore the port: two servers on one host keep theirs apart
        bundle=bundle_in_words(settings),
    )
    app = create_app(config)
    app.state.token = token
    return app


def bundle_in_words(settings) -> str:  # noqa: ANN001 - Settings
    try:
        from tagd.model import load_spec, resolve_bundle

        where = resolve_bundle(settings.model.path)
        return f"{where} (version {load_spec(where).version})"
    except TagdError as exc:
        return f"no usable bundle: {exc}"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise WebError(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:8765")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("new password for tagd web: ")
        if getpass.getpass("again: ") != first:
            raise WebError("the two passwords differ; nothing changed")
    else:
        first = sys.stdin.readline().rstrip("\n")
    if len(first) < 8:
        raise WebError("a password needs at least 8 characters; nothing changed")
    return first
