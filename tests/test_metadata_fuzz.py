"""2,000 mutated JPEGs through the reader and the writer: only tagd's own errors, no hang, no crash."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import piexif
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from tagd.errors import TagdError
from tagd.metadata import KeywordUpdate, MetadataWriter

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")]

EXAMPLES = 2000


def _seed_jpeg() -> bytes:
    """A small JPEG with EXIF, IPTC-free, and an XMP packet: every segment kind a mutation can hit."""
    buf = io.BytesIO()
    exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Orientation: 1},
                        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2024:07:01 12:00:00"}})
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buf, "JPEG", quality=80, exif=exif)
    data = buf.getvalue()
    packet = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
              b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
              b'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag><rdf:li>seed</rdf:li></rdf:Bag>'
              b'</dc:subject></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
    body = b"http://ns.adobe.com/xap/1.0/\x00" + packet
    return data[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + data[2:]


SEED = _seed_jpeg()

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(SEED) - 1), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, len(SEED) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(SEED)), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, len(SEED) - 1), st.integers(1, 64)),
    st.tuples(st.just("duplicate"), st.integers(2, 200), st.integers(4, 200)),
)


def mutate(data: bytes, ops: list[tuple]) -> bytes:
    buf = bytearray(data)
    for kind, pos, arg in ops:
        pos = min(pos, len(buf))
        if kind == "flip" and pos < len(buf):
            buf[pos] ^= arg
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = arg
        elif kind == "delete":
            del buf[pos:pos + arg]
        elif kind == "duplicate":
            buf[pos:pos] = buf[pos:pos + arg]
    return bytes(buf)


@pytest.fixture(scope="module")
def fuzz_writer():
    w = MetadataWriter()
    w.exiftool.timeout = 20  # a hang fails the run instead of stalling it
    yield w
    w.exiftool.close()


def test_mutated_jpegs(fuzz_writer: MetadataWriter, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    stats = {"refused": 0, "written": 0}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(mutation, min_size=1, max_size=3))
    def run(ops: list[tuple]) -> None:
        data = mutate(SEED, ops)
        path = folder / "photo.jpg"
        path.write_bytes(data)
        try:
            current = fuzz_writer.read(path)
            fuzz_writer.write(current, KeywordUpdate(keywords=[*current.keywords, "fuzz"], added=["fuzz"]))
            stats["written"] += 1
        except TagdError as exc:
            stats["refused"] += 1
            assert "\n" not in str(exc)
            assert path.read_bytes() == data  # refused: untouched
        leftovers = [p.name for p in folder.iterdir() if p.name != "photo.jpg"]
        assert leftovers == []

    run()
    assert stats["refused"] + stats["written"] >= EXAMPLES
    assert stats["refused"] > 100 and stats["written"] > 100  # both paths exercised
