"""Folding XMP packets into one (tagd.metadata.xmp_merge, jpeg_xmp), with exiftool as the oracle:
the merged packet must read as the packets read one by one, the later (standard) one winning."""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from tagd.metadata.containers import (
    STASH_NONSTANDARD_HEADER, XMP_JPEG_HEADER, XMP_NONSTANDARD_HEADER, StructureError, inspect,
)
from tagd.metadata.jpeg_xmp import drop_stash, fold, unfold
from tagd.metadata.xmp_merge import MergeError, merge

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

# An old packet as Photoshop CS-era tools wrote it: namespaces declared on rdf:RDF, properties
# as attributes and as elements, a structure, a uuid about.
OLD = f"""<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.1"><rdf:RDF xmlns:rdf="{RDF}"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xap="http://ns.adobe.com/xap/1.0/"
 xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/">
 <rdf:Description rdf:about="uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b" xap:Rating="3" crs:Exposure="+0.50"
   xap:CreatorTool="Old Tool">
  <dc:subject><rdf:Bag><rdf:li>dog</rdf:li><rdf:li>teddy bear</rdf:li></rdf:Bag></dc:subject>
  <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Large &amp; Small</rdf:li></rdf:Alt></dc:title>
  <crs:ToneCurve><rdf:Seq><rdf:li>0, 0</rdf:li><rdf:li>255, 255</rdf:li></rdf:Seq></crs:ToneCurve>
 </rdf:Description>
 <rdf:Description rdf:about="uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b"><xap:Label>Red</xap:Label></rdf:Description>
</rdf:RDF></x:xmpmeta>"""

# What exiftool writes when a user adds a keyword to such a file: a packet of its own.
NEW = f"""<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/' x:xmptk='Image::ExifTool 12.57'>
<rdf:RDF xmlns:rdf='{RDF}'>
 <rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'>
  <dc:subject><rdf:Bag><rdf:li>rufus</rdf:li></rdf:Bag></dc:subject>
 </rdf:Description>
 <rdf:Description rdf:about='' xmlns:xmp='http://ns.adobe.com/xap/1.0/' xmp:Rating='5'/>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end='w'?>"""


def read(tmp: Path, packet: bytes, name: str) -> dict:
    path = tmp / f"{name}.xmp"
    path.write_bytes(packet)
    out = subprocess.run(["exiftool", "-j", "-struct", "-a", "-G1", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    record = json.loads(out)[0]
    return {k: v for k, v in record.items() if k.startswith("XMP")}


def test_merge_reads_as_each_packet_the_later_one_winning(tmp_path: Path) -> None:
    old, new = OLD.encode(), NEW.encode()
    merged = merge([old, new])
    expected = {**read(tmp_path, old, "old"), **read(tmp_path, new, "new")}
    got = read(tmp_path, merged, "merged")
    assert got == expected
    assert got["XMP-dc:Subject"] == ["rufus"] and got["XMP-xmp:Rating"] == 5  # the standard packet's
    assert got["XMP-dc:Title"] == "Large & Small" and got["XMP-crs:ToneCurve"] == ["0, 0", "255, 255"]
    assert got["XMP-rdf:About"] == "uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b"  # one about for all
    # exiftool can edit it: no duplicate property anywhere.
    path = tmp_path / "merged.xmp"
    path.write_bytes(merged)
    proc = subprocess.run(["exiftool", "-overwrite_original", "-XMP-dc:Subject+=x", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and "1 image files updated" in proc.stdout, proc.stderr


def test_merge_refuses_what_it_cannot_read() -> None:
    with pytest.raises(MergeError):
        merge([b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><rdf:Description/></rdf:RDF></x:xmpmeta>", NEW.encode()])
    with pytest.raises(MergeError):
        merge(["<x:xmpmeta>".encode("utf-16"), NEW.encode()])
    with pytest.raises(MergeError):
        merge([OLD.encode()[:-40], NEW.encode()])


def _jpeg(real_photo_dir: Path, *bodies: bytes) -> bytes:
    data = (real_photo_dir / "chelsea.jpg").read_bytes()
    return data[:2] + b"".join(b"\xff\xe1" + (len(b) + 2).to_bytes(2, "big") + b for b in bodies) + data[2:]


def test_fold_then_unfold_gives_back_the_same_bytes(real_photo_dir: Path) -> None:
    for order in ((XMP_JPEG_HEADER + NEW.encode(), XMP_NONSTANDARD_HEADER + OLD.encode()),
                  (XMP_NONSTANDARD_HEADER + OLD.encode(), XMP_JPEG_HEADER + NEW.encode()),
                  (XMP_NONSTANDARD_HEADER + OLD.encode(),)):
        data = _jpeg(real_photo_dir, *order)
        folded = fold(data, inspect(data, ".jpg"))
        after = inspect(folded, ".jpg")  # one standard packet, no legacy one: every reader agrees
        assert len(after.xmp_packets) == 1 and not after.legacy_packets
        assert after.payload == inspect(data, ".jpg").payload
        assert folded.count(STASH_NONSTANDARD_HEADER + zlib.compress(OLD.encode(), 9)) == 1
        assert unfold(folded, after) == data
        dropped = drop_stash(folded, after)
        assert STASH_NONSTANDARD_HEADER not in dropped and inspect(dropped, ".jpg").xmp_packets == after.xmp_packets


def test_fold_refuses_a_merge_too_large_for_one_segment(real_photo_dir: Path) -> None:
    big = OLD.replace("Old Tool", "y" * 40_000).encode()
    huge = NEW.replace("rufus", "z" * 30_000).encode()
    data = _jpeg(real_photo_dir, XMP_NONSTANDARD_HEADER + big, XMP_JPEG_HEADER + huge)
    with pytest.raises(StructureError, match="too large"):
        fold(data, inspect(data, ".jpg"))
