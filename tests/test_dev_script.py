"""`./dev manage ...` works on the embedded default as the README says, and `./dev run` on a taken
port stops at once and says why. (The runs that start the whole portal: tests/e2e/test_dev_run.py.)"""

from __future__ import annotations

import socket
import stat

from tests.dev_script import dev, dev_env, leftovers


def test_manage_works_on_the_embedded_default_without_debug_or_a_secret_key(tmp_path):
    result = dev("manage", "check", env=dev_env(tmp_path / "var"))
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_createsuperuser_as_the_readme_says_makes_a_superuser(tmp_path):
    env = dev_env(tmp_path / "var")
    assert dev("manage", "migrate", "--no-input", "-v", "0", env=env).returncode == 0
    created = dev(
        "manage",
        "createsuperuser",
        "--noinput",
        env={
            **env,
            "DJANGO_SUPERUSER_USERNAME": "abuse-desk",
            "DJANGO_SUPERUSER_EMAIL": "abuse@example.org",
            "DJANGO_SUPERUSER_PASSWORD": "a long enough passphrase 7",
        },
    )
    assert created.returncode == 0, created.stderr
    assert "Superuser created successfully" in created.stdout

    check = (
        "from django.contrib.auth import get_user_model; "
        "u = get_user_model().objects.get(username='abuse-desk'); "
        "print(u.is_superuser, u.check_password('a long enough passphrase 7'))"
    )
    shown = dev("manage", "shell", "-v", "0", "-c", check, env=env)
    assert shown.stdout.split() == ["True", "True"], shown.stderr


def test_the_embedded_secret_key_is_made_once_kept_private_and_reused(tmp_path):
    # The web, the worker and manage.py sign confirmation links with it: one key for all, kept.
    var = tmp_path / "var"
    assert dev("manage", "check", env=dev_env(var)).returncode == 0
    key_file = var / "secret_key"
    key = key_file.read_text().strip()
    assert len(key) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert dev("manage", "check", env=dev_env(var)).returncode == 0
    assert key_file.read_text().strip() == key


def test_manage_on_a_configured_database_keeps_the_production_rules(tmp_path):
    # Pointed elsewhere, the environment says what it is: no DEBUG, no key of ours.
    env = dev_env(tmp_path / "var", DATABASE_URL=f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}")
    result = dev("manage", "check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is required unless DEBUG=true" in result.stderr
    assert not (tmp_path / "var" / "secret_key").exists()


def test_run_on_a_taken_port_says_which_and_how_to_choose_another(tmp_path):
    var = tmp_path / "var"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = dev("run", env=dev_env(var, PORT=str(port)), timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"PORT={port + 1} ./dev run" in result.stderr
    assert "unbound variable" not in output
    # Stopped before starting anything: no worker, no database.
    assert leftovers(str(var)) == []
    assert not (var / "portal.sqlite3").exists()
