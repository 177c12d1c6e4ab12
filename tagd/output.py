"""What the commands print on stdout: valid UTF-8 JSON lines, and paths as the bytes they are.

A file name that is not UTF-8 (a Latin-1 `caf\\xe9.jpg`) reaches Python as a lone surrogate
(os.fsdecode's surrogate escape, U+DC80-U+DCFF). Printed as text, it comes out as its original
bytes, as `ls` prints it, so that `xargs` gets the real file. In JSON it becomes a `\\udcXX` escape
instead: the line stays valid JSON in valid UTF-8 whatever the locale, and `os.fsencode` of the
decoded string gives the bytes back. Nothing depends on sys.stdout's encoding or error handler,
which differ between a C, C.UTF-8 and en_US.UTF-8 locale (one of them raised on such a name).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def json_line(obj: Any) -> str:
    """One JSON object and a newline; non-ASCII text left readable (escaped only where it must be)."""
    return json.dumps(obj, ensure_ascii=False) + "\n"


def write(text: str, *, json_lines: bool = False) -> None:
    """Write `text` to stdout as UTF-8 bytes: undecodable path bytes as themselves, or (JSON) as
    `\\udcXX` escapes inside the JSON strings they stand in."""
    if json_lines:
        data = text.encode("utf-8", "backslashreplace")
    else:
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no file name decodes to: show it, do not fail
            data = text.encode("utf-8", "backslashreplace")
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream (a test's capture): what it can hold
        sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()
        return
    sys.stdout.flush()
    buffer.write(data)
    buffer.flush()
