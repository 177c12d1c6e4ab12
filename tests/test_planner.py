"""tagd.planner: the one rule scan, the daemon and the pipeline follow for a file the index may
know. Pure, so every case is checked directly; the daemon and scan tests check it in place."""

from __future__ import annotations

import pytest

from tagd.planner import Known, decide, same_content

V = "tagd-default-v2@abc"


def known(**kw) -> Known:  # noqa: ANN003
    base = dict(size=100, mtime_ns=5, content_hash="h" * 64, status="tagged", model_version=V)
    return Known(**{**base, **kw})


@pytest.mark.parametrize("record, size, mtime, expected", [
    (None, 100, 5, "new"),
    (known(), 100, 5, "unchanged"),
    (known(reverted=True), 100, 5, "reverted"),
    (known(reverted=True), 101, 6, "reverted"),  # changed, but the user took tagd's tags back
    (known(model_version="tagd-0.1@old"), 100, 5, "tag"),  # a new model re-tags the library
    (known(status="pending"), 100, 5, "tag"),
    (known(status="failed", error="cannot decode: truncated"), 100, 5, "unchanged"),  # no retry loop
    (known(status="failed", error="cannot decode: truncated"), 120, 6, "tag"),  # it changed: try again
    (known(status="failed", error="read-only file (no write permission bits); not written"), 100, 5, "if-writable"),
    (known(), 100, 6, "if-content-changed"),  # a touch, or new bytes of the same size
    (known(), 101, 6, "tag"),
    (known(content_hash=None), 100, 6, "tag"),
])
def test_decide(record: Known | None, size: int, mtime: int, expected: str) -> None:
    assert decide(record, size, mtime, V) == expected


def test_same_content_reads_the_file_only_when_the_size_matches() -> None:
    calls: list[int] = []

    def digest() -> str:
        calls.append(1)
        return "h" * 64

    assert not same_content(known(), 99, digest) and calls == []
    assert not same_content(None, 100, digest) and not same_content(known(content_hash=None), 100, digest) and calls == []
    assert same_content(known(), 100, digest) and calls == [1]
    assert not same_content(known(content_hash="g" * 64), 100, digest)
