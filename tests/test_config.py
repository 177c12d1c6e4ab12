"""Settings: TOML, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagd.config import load_settings
from tagd.errors import ConfigError


def test_defaults_need_no_file(tmp_path: Path) -> None:
    settings = load_settings(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert settings.model.path is None
    assert settings.model.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_toml_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[model]\nthreads = 2\nbatch_size = 8\n[index]\npath = "/tmp/i.db"\n')
    settings = load_settings(config, env={"TAGD_MODEL__THREADS": "1", "TAGD_MODEL__PROVIDERS": "CUDAExecutionProvider,CPUExecutionProvider"})
    assert settings.model.threads == 1
    assert settings.model.batch_size == 8
    assert settings.index.path == Path("/tmp/i.db")
    assert settings.model.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize("text,needle", [
    ("[model]\nthreads = -1\n", "model.threads"),
    ("[model]\nno_such_key = 1\n", "model.no_such_key"),
    ("[model\n", "invalid TOML"),
])
def test_invalid_config(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(config, env={})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "none.toml", env={})
