import subprocess
import sys

import pytest

from nexa.config import load_settings
from nexa.errors import ConfigError


def test_flags_override_environment_which_overrides_defaults(monkeypatch):
    monkeypatch.setenv("NEXA_CTX", "2048")
    monkeypatch.setenv("NEXA_PARALLEL", "3")
    settings = load_settings(ctx=1024, parallel=None)
    assert (settings.ctx, settings.parallel, settings.port) == (1024, 3, 18181)


def test_nexa_host_may_carry_the_port():
    assert load_settings(host="0.0.0.0:8080").bind() == ("0.0.0.0", 8080)
    assert load_settings(host="[::1]:9000").bind() == ("::1", 9000)
    assert load_settings(host="::1").bind() == ("::1", 18181)


def test_a_bad_setting_names_the_flag_and_the_variable(monkeypatch):
    monkeypatch.setenv("NEXA_CTX", "abc")
    with pytest.raises(ConfigError, match="--ctx / NEXA_CTX"):
        load_settings()


def test_the_cli_reports_a_bad_setting_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nexa", "serve", "--parallel", "0", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "--parallel / NEXA_PARALLEL" in result.stderr and "Traceback" not in result.stderr
