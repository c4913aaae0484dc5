"""Every variable also reads from a file named by NAME_FILE (compose and Docker secrets).

The rules: the file's trailing line break is not part of the value; a missing, unreadable or
empty file stops start-up naming NAME_FILE; NAME and NAME_FILE both set is an error too.
DATABASE_PASSWORD (or its file) is the password in DATABASE_URL.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured

from delist_portal.env import envbool, envdatabase_url, envint, envlist, envrate, envsecret, envstr

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def secret_file(monkeypatch, tmp_path):
    """write(NAME, text) puts text in a file and points NAME_FILE at it."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name.lower()
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv(f"{name}_FILE", str(path))
        return path

    monkeypatch.delenv("X_VALUE", raising=False)
    return write


def test_the_trailing_newline_of_a_file_is_not_part_of_the_value(secret_file):
    secret_file("X_VALUE", "s3cret\n")
    assert envsecret("X_VALUE") == "s3cret"


def test_a_windows_line_ending_is_dropped_too_and_inner_spaces_stay(secret_file):
    secret_file("X_VALUE", " two words \r\n")
    assert envsecret("X_VALUE") == " two words "


def test_a_file_without_a_newline_is_read_as_it_is(secret_file):
    secret_file("X_VALUE", "no-newline")
    assert envsecret("X_VALUE") == "no-newline"


def test_a_missing_file_stops_start_up_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("X_VALUE_FILE", str(tmp_path / "nothing-here"))
    with pytest.raises(ImproperlyConfigured, match=r"X_VALUE_FILE: cannot read .*nothing-here"):
        envsecret("X_VALUE")


def test_a_folder_instead_of_a_file_stops_start_up(monkeypatch, tmp_path):
    monkeypatch.setenv("X_VALUE_FILE", str(tmp_path))
    with pytest.raises(ImproperlyConfigured, match="X_VALUE_FILE: cannot read"):
        envsecret("X_VALUE")


@pytest.mark.parametrize("text", ["", "\n", "\r\n\n"])
def test_an_empty_file_stops_start_up(secret_file, text):
    secret_file("X_VALUE", text)
    with pytest.raises(ImproperlyConfigured, match="X_VALUE_FILE: .* is empty"):
        envsecret("X_VALUE")


def test_a_file_that_is_not_utf8_stops_start_up(monkeypatch, tmp_path):
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe\x00key")
    monkeypatch.setenv("X_VALUE_FILE", str(path))
    with pytest.raises(ImproperlyConfigured, match="X_VALUE_FILE: .* is not UTF-8"):
        envsecret("X_VALUE")


def test_setting_both_the_variable_and_its_file_is_an_error(secret_file, monkeypatch):
    secret_file("X_VALUE", "from-file\n")
    monkeypatch.setenv("X_VALUE", "from-env")
    with pytest.raises(ImproperlyConfigured, match="X_VALUE and X_VALUE_FILE are both set"):
        envsecret("X_VALUE")


def test_an_empty_variable_beside_its_file_counts_as_unset(secret_file, monkeypatch):
    secret_file("X_VALUE", "from-file\n")
    monkeypatch.setenv("X_VALUE", "")
    assert envsecret("X_VALUE") == "from-file"


def test_an_empty_file_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("X_VALUE_FILE", "")
    monkeypatch.setenv("X_VALUE", "plain")
    assert envsecret("X_VALUE") == "plain"


def test_every_typed_reader_takes_its_value_from_a_file(secret_file, monkeypatch):
    secret_file("X_VALUE", "true\n")
    assert envbool("X_VALUE", False) is True
    secret_file("X_VALUE", "42\n")
    assert envint("X_VALUE", 1) == 42
    secret_file("X_VALUE", "a.example, b.example\n")
    assert envlist("X_VALUE", "") == ["a.example", "b.example"]
    assert envstr("X_VALUE", "unused") == "a.example, b.example"
    secret_file("X_VALUE", "30/m\n")
    assert envrate("X_VALUE", "10/h") == "30/m"


def test_a_bad_value_in_a_file_is_reported_like_a_bad_variable(secret_file):
    secret_file("X_VALUE", "yes\n")
    with pytest.raises(ImproperlyConfigured, match="X_VALUE must be 'true' or 'false'"):
        envbool("X_VALUE", False)


APP_PACKAGES = ("delist_portal", "blocklist", "requests_app", "portal_lib")


def _direct_environment_reads(path: Path) -> list[str]:
    """Lines of a module that read os.environ or os.getenv, bar naming the settings module."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "getenv", "environb", "getenvb")
        ):
            line = lines[node.lineno - 1].strip()
            if not line.startswith('os.environ.setdefault("DJANGO_SETTINGS_MODULE"'):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {line}")
    return found


def test_the_portal_reads_its_variables_only_through_the_readers_that_know_file():
    # Otherwise that variable would silently ignore its _FILE form.
    modules = [
        path
        for package in APP_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts and path != ROOT / "delist_portal" / "env.py"
    ]
    assert modules
    assert [line for path in modules for line in _direct_environment_reads(path)] == []


# DATABASE_PASSWORD


@pytest.fixture
def database_env(monkeypatch):
    for name in ("DATABASE_URL", "DATABASE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    return monkeypatch


def test_the_password_file_goes_into_the_database_url(database_env, secret_file):
    database_env.setenv("DATABASE_URL", "postgres://delist@postgres:5432/delist")
    secret_file("DATABASE_PASSWORD", "p@ss/w:rd%?#\n")
    config = environ.Env.db_url_config(envdatabase_url())
    assert (config["USER"], config["PASSWORD"], config["HOST"], config["PORT"], config["NAME"]) == (
        "delist",
        "p@ss/w:rd%?#",
        "postgres",
        5432,
        "delist",
    )


def test_a_url_without_a_user_gets_the_password_too(database_env):
    database_env.setenv("DATABASE_URL", "postgres://127.0.0.1/delist")
    database_env.setenv("DATABASE_PASSWORD", "pw")
    config = environ.Env.db_url_config(envdatabase_url())
    assert (config["USER"], config["PASSWORD"], config["HOST"]) == ("", "pw", "127.0.0.1")


def test_without_a_password_the_url_is_left_as_it_is(database_env):
    database_env.setenv("DATABASE_URL", "postgres://u:inline@db/x")
    assert envdatabase_url() == "postgres://u:inline@db/x"
    database_env.delenv("DATABASE_URL")
    assert envdatabase_url() is None


def test_a_password_in_both_places_is_an_error(database_env):
    database_env.setenv("DATABASE_URL", "postgres://u:inline@db/x")
    database_env.setenv("DATABASE_PASSWORD", "other")
    with pytest.raises(ImproperlyConfigured, match="holds a password and DATABASE_PASSWORD is set"):
        envdatabase_url()


def test_a_password_needs_a_postgres_url(database_env):
    database_env.setenv("DATABASE_PASSWORD", "pw")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL is not"):
        envdatabase_url()
    database_env.setenv("DATABASE_URL", "sqlite:////tmp/x.sqlite3")
    with pytest.raises(ImproperlyConfigured, match="needs a postgres:// DATABASE_URL"):
        envdatabase_url()


def _start(env: dict, code: str) -> subprocess.CompletedProcess:
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DELIST_", "DJANGO_", "DATABASE_", "SECRET_KEY", "EXPORT_TOKEN"))
    }
    environment.update({"DJANGO_SETTINGS_MODULE": "delist_portal.settings", **env})
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_the_portal_starts_with_its_secrets_in_files(tmp_path):
    key_value = "k" + "".join(chr(ord("a") + i % 26) for i in range(60))
    files = {
        "SECRET_KEY_FILE": key_value + "\n",
        "EXPORT_TOKEN_FILE": "export-token-from-a-file\n",
        "DATABASE_PASSWORD_FILE": "pw from a file\n",
    }
    env = {"DEBUG": "false", "HTTPS": "false", "VAR_DIR": str(tmp_path / "var")}
    env["DATABASE_URL"] = "postgres://delist@postgres:5432/delist"
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        env[name] = str(tmp_path / name)
    result = _start(
        env,
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECRET_KEY, s.EXPORT_TOKEN, s.DATABASES['default']['PASSWORD'], sep='|')",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{key_value}|export-token-from-a-file|pw from a file"


def test_the_portal_refuses_to_start_with_a_secret_set_twice(tmp_path):
    key = tmp_path / "secret_key"
    key.write_text("x" * 60 + "\n")
    env = {"DEBUG": "true", "VAR_DIR": str(tmp_path / "var"), "SECRET_KEY_FILE": str(key)}
    result = _start({**env, "SECRET_KEY": "y" * 60}, "import django; django.setup()")
    assert result.returncode != 0
    assert "SECRET_KEY and SECRET_KEY_FILE are both set" in result.stderr
