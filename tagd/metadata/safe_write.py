"""The safe write procedure (shared/METADATA.md), for any edit exiftool can make: refuse broken
or hostile files; have exiftool write a temp file beside the original (for JPEG, PNG and WebP
only their metadata, the image data put back after); check the temp file (image payload
byte-identical, all other metadata unchanged but what the caller expects, no new validation
warnings, the caller's own read-back checks); fsync it; carry over mode, owner and xattrs; make
sure the original did not change meanwhile; `os.replace`; fsync the directory. On any failure
the temp file is removed and the original is byte-identical.

It knows files and exiftool, not keywords: tagd.metadata.writer decides what to write (the
arguments) and what must read back. The disk primitives are tagd.metadata.files'.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import stat as stat_mod
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from tagd.memory import large_operation
from tagd.metadata import files
from tagd.metadata.containers import (
    Container, StructureError, inspect, jpeg_edit_stub, jpeg_unstub, metadata_stub, png_stub, png_unstub, single_image,
    sniff,
)
from tagd.metadata.exiftool import ExifTool, ExifToolError, ExifToolPool, first_error
from tagd.metadata.files import READ_ONLY_DIRECTORY, READ_ONLY_FILE, TEMP_MARK, InFileUnsafe, WriteError, remove_stale_temp_files
from tagd.metadata.jpeg_xmp import fold, has_legacy_xmp, packets_by_precedence
from tagd.metadata.webp import set_xmp

log = logging.getLogger("tagd.metadata.writer")

Expected = Callable[[str], bool]  # a metadata key the edit may change
Check = Callable[[dict[str, Any], dict[str, Any], Path], None]  # (old record, new record, temp file)

# exiftool's bookkeeping: differences here are not damage (the caller names what its edit changes).
BOOKKEEPING = {
    "Photoshop:IPTCDigest", "IPTC:CodedCharacterSet", "XMP-x:XMPToolkit", "SourceFile",
    "ExifTool:Validate", "ExifTool:Warning", "ExifTool:ExifToolVersion",
    "RIFF:WebP_Flags",  # the VP8X flag that announces an XMP chunk
    "IPTC:EnvelopeRecordVersion",  # added with CodedCharacterSet (envelope record 1:90)
    # exiftool's note that the XMP did not fit one JPEG segment and went on in Extended XMP
    # segments: the layout of the packet, not data (every property is compared, wherever it sits).
    "XMP-xmpNote:HasExtendedXMP",
}

# The safe write holds a file several times over (original, temp, their image data): ~100 MB
# for a 20 MB PNG or TIFF, so large files take tagd.memory's lock.
LARGE_FILE_BYTES = 8 << 20

_VALIDATE_ARGS = ["-G1", "-n", "-validate", "-ExifTool:Validate", "-ExifTool:Warning"]
ALL_ARGS = ["-a", "-G1", "-n", "-struct", "-all", "--System:all", "--File:all"]


class SafeWrite:
    """The procedure, with one exiftool (or a pool of them) and the mtime policy."""

    def __init__(self, exiftool: ExifTool | ExifToolPool, mtime: Literal["update", "preserve"] = "update") -> None:
        self.exiftool = exiftool
        self.mtime = mtime
        self._cleaned_dirs: set[Path] = set()
        self._clean_lock = threading.Lock()

    def apply(self, target: Path, seen: os.stat_result | None, args: list[str], *, charset: str, expected: Expected,
              check: Check, finish: Callable[[bytes, Container], bytes] | None = None) -> str:
        """Have exiftool apply `args` to `target` (None `seen`: a new sidecar, created) through
        the whole procedure; returns the sha256 of the file as written ("" for a new one).
        `charset`: how both files' IPTC is read in the checks. `expected`: which metadata may
        differ between the original and the edit (the point of it). `check(old, new, temp)`:
        the caller's own checks of the edit, raising InFileUnsafe. `finish`: a last change of
        the JPEG's segments after the verified edit (a revert of folded XMP)."""
        self.clean_stale_temp_files(target.parent)
        try:
            folder_mode = os.stat(target.parent).st_mode
        except OSError as exc:
            raise WriteError(target, files.os_reason(exc)) from None
        if not folder_mode & (stat_mod.S_IWUSR | stat_mod.S_IWGRP | stat_mod.S_IWOTH):
            # Root could write anyway; the owner's intent counts, as for a read-only file.
            raise WriteError(target, f"{READ_ONLY_DIRECTORY}; not written")
        large = seen is not None and seen.st_size >= LARGE_FILE_BYTES
        with large_operation if large else contextlib.nullcontext():
            return self._apply(target, seen, args, charset, expected, check, finish)

    def _apply(self, target: Path, seen: os.stat_result | None, args: list[str], charset: str, expected: Expected,
               check: Check, finish: Callable[[bytes, Container], bytes] | None) -> str:
        creating = seen is None
        original_data, before = b"", None
        if not creating:
            original_data, before = self._precheck(target, seen)
        temp = self.temp_name(target, target.suffix)
        source, scratch = target, None  # what exiftool rewrites when it takes a whole file
        try:
            kind = None if creating else sniff(original_data[:16])
            if before is not None and has_legacy_xmp(before):
                # The edit, and every check of it, start from the file with its XMP folded
                # into one standard packet (jpeg_xmp): what every reader will then see.
                original_data = self._fold(target, original_data, before)
                before = inspect(original_data, target.suffix)
                if not single_image(before):
                    source = scratch = self.temp_name(target, target.suffix)
                    scratch.write_bytes(original_data)
            if creating:
                self._exiftool_create(target, temp, args, [])
            elif kind == "webp":
                self._write_webp(target, original_data, temp, args)
            elif kind == "jpeg" and before is not None and single_image(before):
                self._write_jpeg(target, original_data, before, temp, args)
            elif not (kind == "png" and self._write_png(target, original_data, temp, args)):
                self._exiftool_create(target, temp, ["-o", Path(os.path.abspath(temp)), *args], [source])
            digest = ""
            if before is not None:
                digest = self._verify(target, source, original_data, before, temp, charset, expected, check)
                if finish is not None:
                    digest = self._finish(target, temp, before, finish)
            files.fsync_file(temp)
            if not creating:
                files.copy_attributes(target, temp, seen, self.mtime)
            self._replace(temp, target, seen)
            return digest
        except BaseException as exc:
            files.unlink_quietly(temp)  # whatever went wrong, the original is untouched and no temp stays
            if isinstance(exc, ExifToolError):
                raise WriteError(target, str(exc)) from None
            if isinstance(exc, OSError):
                raise WriteError(target, files.os_reason(exc)) from None
            raise
        finally:
            if scratch is not None:
                files.unlink_quietly(scratch)

    def _fold(self, target: Path, data: bytes, container: Container) -> bytes:
        """The JPEG with its legacy XMP folded (jpeg_xmp.fold), checked with exiftool: the one
        packet must read as each old packet read on its own, the standard packet's values
        winning where they disagree."""
        try:
            folded = fold(data, container)
        except StructureError as exc:
            raise InFileUnsafe(target, f"its XMP cannot be folded into one packet ({exc.reason})") from None
        packets = packets_by_precedence(data, container)
        merged = packets_by_precedence(folded, inspect(folded, target.suffix))
        with tempfile.TemporaryDirectory(prefix="tagd-fold-") as scratch:
            *old, new = self.packet_records(target, [*packets, *merged], Path(scratch))
        expected: dict[str, Any] = {}
        for record in old:
            expected.update(record)
        changed = sorted(k for k in set(expected) | set(new) if k.startswith("XMP") and expected.get(k) != new.get(k))
        if changed:
            raise InFileUnsafe(target, f"folding its XMP packets into one would change {', '.join(changed[:3])}")
        return folded

    def _finish(self, target: Path, temp: Path, before: Container, finish: Callable[[bytes, Container], bytes]) -> str:
        """Apply `finish` to the verified temp file; its image data must stay as it was."""
        data = temp.read_bytes()
        try:
            new = finish(data, inspect(data, target.suffix))
            after = inspect(new, target.suffix)
        except StructureError as exc:
            raise WriteError(target, f"the reverted file failed the structure check: {exc.reason}") from None
        if after.payload != before.payload:
            raise WriteError(target, "image data would change; not reverted")
        with open(temp, "wb") as fh:
            fh.write(new)
        return hashlib.sha256(new).hexdigest()

    def temp_name(self, target: Path, suffix: str) -> Path:
        return target.parent / f".{target.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{suffix}"

    def _exiftool_create(self, target: Path, output: Path, args: list[str | Path], sources: list[Path]) -> None:
        out, err = self.exiftool.execute([*args, *(Path(os.path.abspath(s)) for s in sources or [output])])
        # With a JSON import (-j=, the regions) exiftool reports its count on stderr instead.
        if "1 image files created" not in out + err or not output.is_file():
            raise WriteError(target, f"exiftool did not write it: {first_error(err) or out.strip() or 'no output'}")

    def _write_png(self, target: Path, data: bytes, temp: Path, args: list[str]) -> bool:
        """exiftool edits the PNG without its image data (a stub, see containers.png_stub), and
        the image data goes back in: exiftool CRC-checks every chunk it copies, in Perl (~2 s for
        20 MB). False when the file cannot be cut that way: the caller writes it whole."""
        try:
            stub, idat_run = png_stub(data)
        except StructureError:
            return False
        self._edit_apart(target, temp, args, stub, ".png", lambda out: png_unstub(out, idat_run))
        return True

    def _write_jpeg(self, target: Path, data: bytes, container: Container, temp: Path, args: list[str]) -> None:
        """exiftool edits the JPEG's metadata alone (a stub without the scan data, see containers.
        jpeg_edit_stub); the scan data goes back after it. Half the exiftool time of a whole-file
        rewrite, and Perl never copies the megabytes of image data."""
        assert container.payload is not None
        payload = container.payload
        self._edit_apart(target, temp, args, jpeg_edit_stub(data, container), ".jpg", lambda out: jpeg_unstub(out, payload))

    def _write_webp(self, target: Path, data: bytes, temp: Path, args: list[str]) -> None:
        """exiftool edits the XMP as a standalone packet; webp.set_xmp swaps the chunk."""
        packets = inspect(data, target.suffix).xmp_packets
        self._edit_apart(target, temp, args, packets[0] if packets else None, ".xmp", lambda out: [set_xmp(data, out)])

    def _edit_apart(self, target: Path, temp: Path, args: list[str], piece: bytes | None, suffix: str,
                    put_back: Callable[[bytes], Sequence[bytes | memoryview]]) -> None:
        """exiftool edits `piece`, a part of the file (None: a new one), as a file of its own;
        `put_back` gives the whole new file's parts from what exiftool wrote; they go into `temp`."""
        piece_in, piece_out = self.temp_name(target, suffix), self.temp_name(target, suffix)
        try:
            if piece is not None:
                piece_in.write_bytes(piece)
                self._exiftool_create(target, piece_out, ["-o", Path(os.path.abspath(piece_out)), *args], [piece_in])
            else:
                self._exiftool_create(target, piece_out, args, [])
            new = put_back(piece_out.read_bytes())
        except StructureError as exc:
            raise WriteError(target, exc.reason) from None
        finally:
            files.unlink_quietly(piece_in)
            files.unlink_quietly(piece_out)
        with open(temp, "xb") as fh:
            for part in new:
                fh.write(part)

    def _precheck(self, target: Path, seen: os.stat_result) -> tuple[bytes, Container]:
        try:
            st = os.stat(target)
        except FileNotFoundError:
            raise WriteError(target, "file vanished before writing") from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise WriteError(target, "not a regular file")
        if files.changed(seen, st):
            # Another writer got there first (the user, another machine's tagd on a shared folder):
            # theirs stays, and is no failure of the photo (see ChangedWhileWriting).
            raise files.ChangedWhileWriting(target, "file changed since its keywords were read; not written")
        if st.st_nlink > 1:
            raise WriteError(target, f"hard-linked ({st.st_nlink} links): rewriting would break the link; use sidecar mode")
        if not st.st_mode & (stat_mod.S_IWUSR | stat_mod.S_IWGRP | stat_mod.S_IWOTH):
            raise WriteError(target, f"{READ_ONLY_FILE}; not written")
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise WriteError(target, "directory is not writable; use sidecar mode elsewhere or fix permissions")
        try:
            data = target.read_bytes()
        except OSError as exc:
            raise WriteError(target, files.os_reason(exc)) from None
        try:
            return data, inspect(data, target.suffix)
        except StructureError as exc:
            raise WriteError(target, exc.reason) from None

    def _verify(self, original: Path, source: Path, original_data: bytes, before: Container, temp: Path,
                charset: str, expected: Expected, check: Check) -> str:
        """Refuse a temp file that is not the original plus exactly our edit; returns its sha256.
        `original_data` and `before`: the original's bytes and structure, as the edit started
        from them (held in `source`: the original itself, or a scratch copy of its folded form)."""
        new_data = temp.read_bytes()
        try:
            after = inspect(new_data, original.suffix)
        except StructureError as exc:
            raise WriteError(original, f"written file failed the structure check: {exc.reason}") from None
        if before.payload is not None and before.payload != after.payload:
            raise InFileUnsafe(original, "exiftool would re-encode its image data")
        if before.kind == "tiff":
            files.same_pixels(original, temp)
        old, new = self._metadata_records(original, source, original_data, new_data, before, after, temp, charset)
        changed = sorted(
            key for key in set(old) | set(new)
            if key not in BOOKKEEPING and not expected(key) and not key.startswith("Composite:")
            and not key.endswith(("Offset", "Offsets"))  # where data sits moves; the data is checked apart
            and old.get(key) != new.get(key)
        )
        if changed:
            raise InFileUnsafe(original, f"exiftool would also change {', '.join(changed[:5])} in it")
        check(old, new, temp)
        return hashlib.sha256(new_data).hexdigest()

    def _metadata_records(self, original: Path, source: Path, original_data: bytes, new_data: bytes,
                          before: Container, after: Container, temp: Path, charset: str
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
        """All metadata of the original and the temp file, refusing new validation warnings.

        `exiftool -validate` costs ~18 ms on a 12 MP JPEG and ~1.7 s on a 20 MB PNG, nearly all
        of it spent walking image data that is already proven byte-identical. So a JPEG whose
        payload is one image (no trailer such as MPF previews, whose offsets need the whole
        file) and a PNG are read and validated as their metadata alone (containers.
        metadata_stub), both files in one call (~4 ms each). Both stubs lack the same image
        data, so warnings about that cancel out; any difference comes from the edit.
        """
        # The payloads are equal (checked before): one scan says whether both are one image.
        one_image = single_image(before) if before.kind == "jpeg" else None
        stubs = [metadata_stub(original_data, before, one_image), metadata_stub(new_data, after, one_image)]
        if stubs[0] is not None and stubs[1] is not None:
            with tempfile.TemporaryDirectory(prefix="tagd-verify-") as scratch:
                paths = []
                for name, stub in zip(("before", "after"), stubs):
                    path = Path(scratch) / f"{name}{original.suffix.lower()}"
                    path.write_bytes(stub)
                    paths.append(path)
                old, new = self._read_all(original, paths, charset, validate=True)
            if _warning_count(new) > _warning_count(old):
                raise InFileUnsafe(original, f"exiftool would leave a new warning in it ({new.get('ExifTool:Warning')})")
            return old, new
        # Other containers: the files themselves; the original validated only when needed.
        old, new = self._read_all(original, [source, temp], charset, validate=False)
        new_warnings = self._validation_count(original, temp)
        if new_warnings and new_warnings > self._validation_count(original, source):
            raise InFileUnsafe(original, f"exiftool would leave a new warning in it ({new.get('ExifTool:Warning')})")
        return old, new

    def _read_all(self, original: Path, paths: list[Path], charset: str, validate: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            old, new = self.exiftool.read_json(paths, [*ALL_ARGS, *(["-validate"] if validate else [])], charset)
        except ExifToolError as exc:
            raise WriteError(original, f"cannot re-read the written file: {exc}") from None
        return old, new

    def _validation_count(self, original: Path, path: Path) -> int:
        try:
            (record,) = self.exiftool.read_json([path], _VALIDATE_ARGS)
        except ExifToolError as exc:
            raise WriteError(original, f"cannot validate the written file: {exc}") from None
        return _warning_count(record)

    def _replace(self, temp: Path, target: Path, seen: os.stat_result | None) -> None:
        if seen is not None:
            try:
                now = os.stat(target)
            except FileNotFoundError:
                raise WriteError(target, "file vanished while writing; not replaced") from None
            if files.changed(seen, now):
                raise files.ChangedWhileWriting(target, "file changed while writing; not replaced (will retry when it settles)")
        elif target.exists():
            raise files.ChangedWhileWriting(target, "a sidecar appeared while writing; not replaced")
        os.replace(temp, target)
        files.fsync_dir(target.parent)

    def remove_sidecar(self, sidecar: Path, seen: os.stat_result) -> None:
        """Delete the sidecar tagd created (a revert), unless it changed since it was read."""
        now = os.stat(sidecar)
        if files.changed(seen, now):
            raise WriteError(sidecar, "sidecar changed while reverting; not removed")
        os.unlink(sidecar)
        files.fsync_dir(sidecar.parent)

    def clean_stale_temp_files(self, directory: Path) -> None:
        """Remove temp files left by a tagd process that died between write and rename."""
        with self._clean_lock:
            if directory in self._cleaned_dirs:
                return
            self._cleaned_dirs.add(directory)
        removed = remove_stale_temp_files(directory)
        if removed:
            log.info("%s: removed %d temp file(s) left by an interrupted tagd", directory, removed)

    def packet_records(self, path: Path, packets: list[bytes], scratch: Path) -> list[dict[str, Any]]:
        """exiftool's reading of each XMP packet on its own."""
        paths = []
        for i, packet in enumerate(packets):
            paths.append(scratch / f"packet{i}.xmp")
            paths[-1].write_bytes(packet)
        try:
            return self.exiftool.read_json(paths, ALL_ARGS)
        except ExifToolError as exc:
            raise WriteError(path, f"cannot read metadata: {exc}") from None


def _warning_count(record: dict[str, Any]) -> int:
    # With -n, Validate reads "errors warnings minor-warnings".
    return sum(int(n) for n in re.findall(r"\d+", str(record.get("ExifTool:Validate", "0"))))
