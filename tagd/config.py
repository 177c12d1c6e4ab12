"""Settings: defaults, then a TOML file, then `TAGD_SECTION__KEY` environment variables.

Every key has a description (shown by `tagd config show`). An invalid value fails at start
with the key and the reason, before any photo is touched.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tagd.errors import ConfigError
from tagd.index.postgres import is_url
from tagd.memory import DEFAULT_MAX_DECODE_PIXELS
from tagd.photos import DEFAULT_EXCLUDE, PHOTO_SUFFIXES

ENV_PREFIX = "TAGD_"


def xdg_dir(kind: Literal["data", "config", "state", "cache"]) -> Path:
    var, fallback = {
        "data": ("XDG_DATA_HOME", ".local/share"),
        "cache": ("XDG_CACHE_HOME", ".cache"),
        "config": ("XDG_CONFIG_HOME", ".config"),
        "state": ("XDG_STATE_HOME", ".local/state"),
    }[kind]
    base = os.environ.get(var)
    return Path(base) if base and Path(base).is_absolute() else Path.home() / fallback


def default_index_path() -> Path:
    return xdg_dir("data") / "tagd" / "index.sqlite3"


def config_search_path() -> list[Path]:
    """Files read when no --config is given; later ones win."""
    return [Path("/etc/tagd/config.toml"), xdg_dir("config") / "tagd" / "config.toml"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(_Section):
    path: Path | None = Field(
        None,
        description='Model bundle directory; empty for the packaged default (the YOLOX-Nano detector and the int8 '
                    'EfficientNet-Lite0 classifier, fused; "default", or "int8" as tagd 0.1 called it), "float" for the '
                    "packaged float classifier alone (format 1, no detector).",
    )
    threads: int = Field(0, ge=0, le=256, description="onnxruntime intra-op threads; 0 lets onnxruntime use every core.")
    providers: list[str] = Field(
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
        min_length=1,
        description="onnxruntime execution providers in order of preference; those this onnxruntime build lacks are "
                    "skipped, so a GPU is used where onnxruntime-gpu and a GPU are present, the CPU otherwise.",
    )
    batch_size: int = Field(2, ge=1, le=1024, description="Photos per inference batch (each photo one 224 px view "
                                                          "with the default bundle, three with a three-crop bundle).")
    decode_workers: int = Field(0, ge=0, le=256, description="Threads decoding photos in parallel; 0 means one per core.")
    max_tags: int = Field(10, ge=1, le=100, description="Most tags given to one photo.")
    max_decode_pixels: int = Field(
        DEFAULT_MAX_DECODE_PIXELS, ge=1,
        description="Largest image tagd decodes, in pixels, counted as decoding allocates them: a baseline JPEG at the "
                    "size draft mode decodes it (1/8 of each side for a large photo, so every camera JPEG fits), a "
                    "progressive JPEG, PNG, TIFF or WebP at full size (about 3 bytes a pixel). Larger images are "
                    "refused with a one-line reason (a decompression bomb claims billions). Default: Pillow's limit, "
                    "89 MP, about 270 MB.",
    )

    @field_validator("providers", mode="before")
    @classmethod
    def _one_provider_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class WriteSettings(_Section):
    sidecar: Literal["auto", "always"] = Field(
        "auto",
        description="auto: keywords go into JPEG/PNG/WebP/TIFF files and into .xmp sidecars for RAW and other formats; always: sidecars only (read-only libraries).",
    )
    sidecar_naming: Literal["full", "stem"] = Field(
        "full", description="New sidecar names: full = IMG_1234.CR2.xmp (darktable, digiKam), stem = IMG_1234.xmp (Adobe)."
    )
    mtime: Literal["update", "preserve"] = Field(
        "update", description="After a write: update the file's mtime (photo managers notice the change) or preserve it."
    )
    regions: bool = Field(
        False,
        description="Also write the detector's people and objects as MWG regions (XMP-mwg-rs:RegionInfo, read by "
                    "digiKam and Lightroom) beside your own regions, which are never altered; revert removes only "
                    "tagd's. Off by default: they are whole bodies and objects, not faces, and face tools list every "
                    "region to be named. The index keeps them either way (`tagd show`).",
    )
    workers: int = Field(
        0, ge=0, le=64,
        description="Keyword writes in parallel, each with its own warm exiftool process; 0 means one per core, at most 4.",
    )

    def worker_count(self) -> int:
        return self.workers or max(1, min(4, os.cpu_count() or 1))


class WatchSettings(_Section):
    roots: list[Path] = Field([], description="Folders to watch, recursively; `tagd run ROOT...` overrides them.")
    extensions: list[str] = Field(
        sorted(PHOTO_SUFFIXES),
        description="File extensions (case-insensitive) that are photos, for every command (tag, revert, scan, run); "
                    "the default is tagd's table of photo and camera RAW formats.",
    )
    include: list[str] = Field([], description="If set, only paths matching one of these globs (relative to their root) are processed.")
    exclude: list[str] = Field(list(DEFAULT_EXCLUDE), description="Globs (matched against each path component and the relative path) that are never processed.")
    settle_s: float = Field(2.0, ge=0.0, le=3600, description="A file is processed only after its size and mtime have not changed for this long.")
    rescan_interval_s: float = Field(3600.0, ge=0.0, description="Reconcile the roots with the index this often (0: only at start).")
    polling: bool = Field(False, description="Poll instead of inotify: for network mounts (NFS, SMB) where inotify sees no events.")
    poll_interval_s: float = Field(30.0, gt=0, description="Polling interval when polling = true.")
    queue_size: int = Field(10_000, ge=16, description="Most photos waiting for inference; a burst beyond it waits on disk and is found by the next scan.")
    batch_ms: int = Field(50, ge=0, le=60_000, description="How long the daemon waits to fill an inference batch.")
    follow_symlinks: bool = Field(False, description="Follow symlinks inside the roots (links pointing outside the roots are never followed).")


class RefineSettings(_Section):
    mode: Literal["add-only", "suggest", "full"] = Field(
        "add-only",
        description="add-only: tagd adds its tags after yours and never removes, renames or reorders yours; "
                    "suggest: also marks your keywords that the model and your library contradict as suggested removals "
                    "(in the index and tagd's XMP namespace, shown by `tagd show`), without removing them; "
                    "full: removes them (`tagd revert` brings them back).",
    )
    neighbours: int = Field(
        20, ge=0, le=200,
        description="How many of your most similar photos vote on a photo's tags, with the tags you gave them "
                    "(0: none; only photos carrying a keyword of yours vote).",
    )


class IndexSettings(_Section):
    path: Path = Field(default_factory=default_index_path, description="SQLite index file.")
    url: str | None = Field(
        None,
        description='A PostgreSQL database instead of the SQLite file, shared by several machines: '
                    '"postgresql://user:password@host/dbname" (libpq URL; needs `pip install \'tagd[postgres]\'`).',
    )

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not is_url(value):
            raise ValueError("must be a postgresql:// URL (leave it out for the SQLite file in index.path)")
        return value or None

    def target(self) -> Path | str:
        """What tagd.index.db.Index opens: the server's URL when one is set, else the file."""
        return self.url or self.path

    def use(self, given: Path | str) -> None:
        """A command line's `--index`: a file path or a postgresql:// URL."""
        if is_url(given):
            self.url = given
        else:
            self.url = None
            self.path = Path(given)


class WebSettings(_Section):
    listen: str = Field("127.0.0.1:8765", description="`tagd web` address HOST:PORT; anything but a loopback address needs a password (tagd web --set-password).")
    page_size: int = Field(120, ge=12, le=1000, description="Photos per gallery page.")
    thumbnail_px: int = Field(320, ge=64, le=1024, description="Long side of gallery thumbnails, in pixels (cached under $XDG_CACHE_HOME/tagd/thumbnails).")


class Settings(_Section):
    model: ModelSettings = Field(default_factory=ModelSettings)
    write: WriteSettings = Field(default_factory=WriteSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    refine: RefineSettings = Field(default_factory=RefineSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    web: WebSettings = Field(default_factory=WebSettings)


def describe(settings: "Settings") -> list[tuple[str, Any, str]]:
    """(key, value, description) for every setting, for `tagd config show`."""
    rows = []
    for section_name, section_field in type(settings).model_fields.items():
        section = getattr(settings, section_name)
        for key, field in type(section).model_fields.items():
            value = getattr(section, key)
            if (section_name, key) == ("index", "url") and value:
                from tagd.index.postgres import redact  # a password does not belong on a screen

                value = redact(value)
            rows.append((f"{section_name}.{key}", value, field.description or ""))
    return rows


def load_settings(config: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Defaults <- config file(s) <- environment. `config` replaces the search path."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    files = [config] if config else [p for p in config_search_path() if p.is_file()]
    for path in files:
        _merge(data, _read_toml(path))
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, name = key[len(ENV_PREFIX):].lower().partition("__")
        data.setdefault(section, {})
        if isinstance(data[section], dict):
            data[section][name] = _env_value(value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        source = f" in {files[-1]}" if files else ""
        raise ConfigError(f"config key {where}{source}: {first['msg']}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML ({exc})") from None


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _env_value(raw: str) -> Any:
    # Lists come as comma-separated strings (TAGD_MODEL__PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider).
    return [part.strip() for part in raw.split(",")] if "," in raw else raw
