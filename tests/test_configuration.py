"""Settings come from the environment, strictly: a bad value stops start-up and says which."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from delist_portal.env import envbool, envint, envsecret
from requests_app.checks import check_delist_settings

ROOT = Path(__file__).resolve().parent.parent


def start(code: str, **env) -> subprocess.CompletedProcess:
    """Runs Python in a fresh process with the portal's settings and the given environment."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DELIST_")}
    environment.update({"DJANGO_SETTINGS_MODULE": "delist_portal.settings", "DEBUG": "true", **env})
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("delay", [0, 3600, 86400])
def test_the_propagation_delay_may_be_zero_to_a_day(settings, delay):
    settings.DELIST_PROPAGATION_DELAY = delay
    assert check_delist_settings() == []


@pytest.mark.parametrize("delay", [-1, 86401, 10**9])
def test_a_delay_out_of_range_is_a_system_check_error(settings, delay):
    settings.DELIST_PROPAGATION_DELAY = delay
    errors = check_delist_settings()
    assert [e.id for e in errors] == ["delist.E001"]
    assert "DELIST_PROPAGATION_DELAY" in errors[0].msg and "0 to 86400" in errors[0].msg


def test_the_web_process_refuses_to_start_with_a_delay_out_of_range():
    result = start("import delist_portal.wsgi", DELIST_PROPAGATION_DELAY="90000")
    assert result.returncode != 0
    assert "DELIST_PROPAGATION_DELAY=90000 is out of range" in result.stderr


def test_manage_py_refuses_to_run_with_a_delay_out_of_range():
    result = start(
        "import sys; from django.core.management import execute_from_command_line;"
        "execute_from_command_line(['manage.py', 'check'])",
        DELIST_PROPAGATION_DELAY="-5",
    )
    assert result.returncode != 0
    assert "delist.E001" in result.stderr


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_the_worker_and_beat_refuse_to_start_with_a_sweep_interval_out_of_range(process, tmp_path):
    code = (
        "import sys; from celery.__main__ import main;"
        f"sys.argv = ['celery', '-A', 'delist_portal', '{process}']; main()"
    )
    result = start(code, DELIST_SWEEP_INTERVAL="0", VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DELIST_SWEEP_INTERVAL=0 is out of range" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DELIST_PROPAGATION_DELAY": "an hour"}, "DELIST_PROPAGATION_DELAY must be a whole number"),
        ({"DEBUG": "yes"}, "DEBUG must be 'true' or 'false'"),
        ({"DEBUG": "false", "SECRET_KEY": ""}, "SECRET_KEY is required"),
        ({"DATABASE_URL": "nosuchdb://x/y"}, "DATABASE_URL"),
    ],
)
def test_a_malformed_value_stops_start_up_naming_the_variable(env, message):
    result = start("import django; django.setup()", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_strict_booleans(monkeypatch):
    monkeypatch.setenv("X_FLAG", "True")
    assert envbool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "1")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        envbool("X_FLAG", False)


def test_a_file_suffix_reads_the_value_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert envsecret("X_SECRET") == "s3cret"
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="X_SECRET_FILE"):
        envsecret("X_SECRET")


def test_integers_must_be_whole_numbers(monkeypatch):
    monkeypatch.setenv("X_NUMBER", "12")
    assert envint("X_NUMBER", 1) == 12
    monkeypatch.setenv("X_NUMBER", "1.5")
    with pytest.raises(ImproperlyConfigured, match="X_NUMBER"):
        envint("X_NUMBER", 1)
