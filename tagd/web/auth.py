"""Who may use `tagd web`: the owner, proven by a token or a password, in a session.

- The token: 32 random bytes, new at every start, printed by `tagd web` and stored in
  `$XDG_STATE_HOME/tagd/web-token`, mode 0600, so only the owner (or root) can read it.
- The password: set with `tagd web --set-password`, stored as an scrypt hash (n=2^15, r=8,
  p=1, 16-byte salt) in `$XDG_CONFIG_HOME/tagd/web-password`, mode 0600. Required to listen
  on anything but a loopback address; then the token does not log in at all.
- A session is a random id in an HttpOnly, SameSite=Strict cookie; the server keeps the
  sessions in memory (a restart logs everyone out) with a CSRF token each.
- Every state-changing request carries the session's CSRF token (a hidden form field or an
  X-CSRF-Token header) and, when the browser says where it comes from (Origin, Sec-Fetch-Site),
  comes from this site.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any

from tagd.config import xdg_dir
from tagd.errors import TagdError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SESSION_IDLE_S = 7 * 24 * 3600
UNDO_DEPTH = 20


class AuthError(TagdError):
    """The password or token files cannot be used (unreadable, readable by others, malformed)."""


def token_path() -> Path:
    return xdg_dir("state") / "tagd" / "web-token"


def password_path() -> Path:
    return xdg_dir("config") / "tagd" / "web-password"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` as a file only its owner can read, atomically: a reader sees the
    old file or the new one, never a file that was briefly readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def new_token(path: Path | None = None) -> str:
    token = secrets.token_urlsafe(32)
    write_private(path or token_path(), token + "\n")
    return token


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=128 * 1024 * 1024, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def load_password_hash(path: Path | None = None) -> str | None:
    """The stored hash, or None when no password is set. A file others can read or write is
    refused: it would let them try passwords offline, or set their own."""
    path = path or password_path()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if st.st_mode & 0o077:
        raise AuthError(f"{path} is readable or writable by others (mode {st.st_mode & 0o777:o}): chmod 600 it, "
                        "or set the password again with tagd web --set-password")
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise AuthError(f"cannot read {path}: {exc.strerror}") from None
    if not text.startswith("scrypt$") or text.count("$") != 5:
        raise AuthError(f"{path} does not hold a tagd password hash: set it again with tagd web --set-password")
    return text


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Session:
    csrf: str
    last_seen: float
    undo: list[Any] = field(default_factory=list)  # tagd.review.Action, newest last
    flash: list[str] = field(default_factory=list)  # messages for the next page shown


class Sessions:
    """The logged-in sessions, in memory."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._lock = Lock()

    def create(self) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), last_seen=time.monotonic())
        with self._lock:
            self._expire()
            self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None or time.monotonic() - session.last_seen > SESSION_IDLE_S:
                self._sessions.pop(sid, None)
                return None
            session.last_seen = time.monotonic()
            return session

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, v in self._sessions.items() if now - v.last_seen > SESSION_IDLE_S]:
            del self._sessions[sid]


class Credentials:
    """What logs in: the token of this run (on loopback only) and the password, if one is set."""

    def __init__(self, token: str | None, password_hash: str | None) -> None:
        self.token = token
        self.password_hash = password_hash

    def check(self, secret: str) -> bool:
        secret = secret.strip()
        if not secret:
            return False
        if self.token is not None and hmac.compare_digest(secret.encode(), self.token.encode()):
            return True
        return self.password_hash is not None and check_password(secret, self.password_hash)
