"""Settings: defaults, TOML file, environment overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mailsift.config import load_settings


def test_defaults_point_at_the_shared_corpus_and_sqlite() -> None:
    s = load_settings()
    assert s.store_url.startswith("sqlite:///")
    # unset thresholds come from the served model (or the fallback when it has none)
    assert s.thresholds.spam is None and s.thresholds.hold is None and s.thresholds.reject is None
    t = s.thresholds.resolved()
    assert (t.spam, t.hold, t.reject) == (0.5, 0.9, 0.995)
    t = s.thresholds.resolved({"spam": 0.7, "hold": 0.8, "reject": 0.99})
    assert (t.spam, t.hold, t.reject) == (0.7, 0.8, 0.99)
    assert s.mlflow_tracking_uri.startswith("sqlite:///")


def test_toml_file_then_environment_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "mailsift.toml"
    cfg.write_text(
        '[smtp]\nport = 2600\nlocal_domains = ["a.test", "b.test"]\n'
        "[thresholds]\nspam = 0.6\nhold = 0.8\nreject = 0.99\n"
        '[paths]\nvar_dir = "/tmp/x"\n'
    )
    monkeypatch.setenv("MAILSIFT_CONFIG", str(cfg))
    s = load_settings()
    assert s.smtp.port == 2600
    assert s.smtp.local_domains == ["a.test", "b.test"]
    assert s.thresholds.spam == 0.6
    assert s.paths.var_dir == Path("/tmp/x")
    monkeypatch.setenv("MAILSIFT_SMTP__PORT", "2700")
    monkeypatch.setenv("MAILSIFT_CORPUS", str(tmp_path))
    s = load_settings()
    assert s.smtp.port == 2700  # environment beats the file
    assert s.smtp.local_domains == ["a.test", "b.test"]  # the rest of the block stays
    assert s.paths.corpus == tmp_path
    s = load_settings(smtp={"port": 2800})
    assert s.smtp.port == 2800  # explicit arguments beat both


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError):
        load_settings(thresholds={"spam": 0.9, "hold": 0.5, "reject": 0.99})


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSIFT_CONFIG", "/nonexistent/mailsift.toml")
    with pytest.raises(FileNotFoundError):
        load_settings()
