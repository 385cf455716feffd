"""floss_core/settings.py: every FLOSS_* variable parsed in one place, documented in the README."""
import re
from pathlib import Path

import pytest

from floss_core import settings

ROOT = Path(__file__).resolve().parents[1]


def test_unset_or_empty_means_the_default(monkeypatch):
    for name, s in settings.SETTINGS.items():
        monkeypatch.delenv(name, raising=False)
        assert settings.get(name) == s.default
        monkeypatch.setenv(name, "  ")
        assert settings.get(name) == s.default


@pytest.mark.parametrize("name, text, value", [
    ("FLOSS_WORKERS", "3", 3), ("FLOSS_WORKERS", "auto", "auto"), ("FLOSS_THREADS", "2", 2),
    ("FLOSS_STALE_S", "2.5", 2.5), ("FLOSS_NATIVE", "0", False), ("FLOSS_NATIVE", "on", True),
    ("FLOSS_NO_WORKER", "1", True), ("FLOSS_PER_SCHEDULE", "no", False), ("FLOSS_EXECUTOR", "dask", "dask"),
    ("FLOSS_STORE", "/x/y.db", "/x/y.db"),
])
def test_values_parse(monkeypatch, name, text, value):
    monkeypatch.setenv(name, text)
    assert settings.get(name) == value


@pytest.mark.parametrize("name, text, message", [
    ("FLOSS_WORKERS", "many", "FLOSS_WORKERS must be an integer >= 1 or auto, got 'many'"),
    ("FLOSS_WORKERS", "0", "FLOSS_WORKERS must be an integer >= 1 or auto, got '0'"),
    ("FLOSS_THREADS", "-1", "FLOSS_THREADS must be an integer >= 1, got '-1'"),
    ("FLOSS_STALE_S", "inf", "FLOSS_STALE_S must be a number of seconds > 0, got 'inf'"),
    ("FLOSS_NATIVE", "maybe", "FLOSS_NATIVE must be 0 or 1, got 'maybe'"),
    ("FLOSS_EXECUTOR", "slurm", "unknown executor 'slurm' in FLOSS_EXECUTOR; choose one of local, dask"),
])
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, name, text, message):
    monkeypatch.setenv(name, text)
    with pytest.raises(ValueError) as e:
        settings.get(name)
    assert str(e.value) == message


def test_a_changed_value_takes_effect(monkeypatch):
    monkeypatch.setenv("FLOSS_THREADS", "2")
    assert settings.get("FLOSS_THREADS") == 2
    monkeypatch.setenv("FLOSS_THREADS", "3")
    assert settings.get("FLOSS_THREADS") == 3


def test_every_variable_the_code_reads_is_in_the_table_and_the_readme():
    read = set()
    for f in list((ROOT / "floss_core").rglob("*.py")) + [ROOT / "dashboard.py"]:
        read |= set(re.findall(r"FLOSS_[A-Z_]+", f.read_text(encoding="utf-8")))
    read -= {"FLOSS_DESIGNS"}                      # a constant of configs.py, not an environment variable
    assert read <= set(settings.SETTINGS), read - set(settings.SETTINGS)
    assert settings.readme_table() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_nothing_outside_settings_reads_the_environment_for_them():
    offenders = []
    for f in list((ROOT / "floss_core").rglob("*.py")) + [ROOT / "dashboard.py"]:
        if f.name == "settings.py":
            continue
        for line in f.read_text(encoding="utf-8").splitlines():
            if re.search(r"environ(\.get)?\s*[\[(]\s*[\"']FLOSS_", line):
                offenders.append(f"{f.name}: {line.strip()}")
    assert offenders == []
