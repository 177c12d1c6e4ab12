"""`tagd web [--listen HOST:PORT] [ROOT...]` and `tagd web --set-password`.

Serves the index the daemon writes, for the photos under ROOT (default: watch.roots). On a
loopback address a new token is printed (and stored, mode 0600) at each start; on any other
address a password is required and the token is not accepted. The app is tagd.web's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tagd.cli.common import EXIT_OK
from tagd.web.server import WebError, build_app, new_token_if, parse_listen, read_password


def add_parsers(sub: argparse._SubParsersAction) -> None:
    web = sub.add_parser(
        "web", help="the library in a browser: gallery, search, review of tags",
        description="Serve the index in a browser, for you only: a gallery, search, each photo with its tags and "
                    "regions, tag pages (rename, merge), statistics, and review (accept, reject, add, undo). "
                    "Changes go into the photos' keywords and the index like `tagd accept/reject`.")
    web.add_argument("roots", nargs="*", type=Path, metavar="ROOT",
                     help="folders whose photos may be shown (default: watch.roots); nothing outside them is served")
    web.add_argument("--listen", metavar="HOST:PORT", help="address (default: web.listen, 127.0.0.1:8765); "
                     "a non-loopback address needs a password")
    web.add_argument("--set-password", action="store_true",
                     help="set the password (read from the terminal, or one line of stdin) and exit")
    web.set_defaults(func=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    from tagd.config import load_settings
    from tagd.web.auth import hash_password, load_password_hash, password_path, write_private

    if args.set_password:
        password = read_password()
        write_private(password_path(), hash_password(password) + "\n")
        print(f"password set (scrypt hash in {password_path()}, mode 600)")
        return EXIT_OK
    settings = load_settings(args.config)
    index_path = args.index or settings.index.target()
    host, port = parse_listen(args.listen or settings.web.listen)
    roots = [Path(os.path.abspath(r)) for r in (args.roots or settings.watch.roots)]
    if not roots:
        raise WebError("no folders to serve: give them (tagd web ~/Pictures) or set watch.roots in the config")
    for root in roots:
        if not root.is_dir():
            raise WebError(f"{root} is not a folder")
    if isinstance(index_path, Path) and not index_path.is_file():
        raise WebError(f"no index at {index_path} yet: run `tagd scan {roots[0]}` or the daemon first")
    from tagd.web.auth import is_loopback

    password_hash = load_password_hash()
    loopback = is_loopback(host)
    if not loopback and password_hash is None:
        raise WebError(f"listening on {host} lets other machines reach tagd: set a password first "
                       "(tagd web --set-password), or listen on 127.0.0.1")
    app = build_app(settings, index_path, roots, token=new_token_if(loopback), password_hash=password_hash, port=port)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    token = app.state.token
    if not loopback:
        print(f"tagd web: warning: listening on {host}, reachable from other machines; the connection is not "
              "encrypted (put a TLS proxy in front of it for anything but a trusted network)", file=sys.stderr)
    if token:
        from tagd.web.auth import token_path

        print(f"tagd web: open {url}login?token={token}\n  (token also in {token_path()}, readable by you only)", flush=True)
    else:
        print(f"tagd web: open {url} and log in with your password", flush=True)
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
    return EXIT_OK


