"""What docker-compose.yml promises ops, read from the file (Docker does not run here).

tests/e2e/test_compose_processes.py runs the commands and health checks it names.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.compose_file import ROOT, command_argv, healthcheck_argv, load, raw

PORTAL = ("web", "worker", "beat")
LONG_RUNNING = ("web", "worker", "beat", "postgres", "redis", "rbldnsd", "mailpit")
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_migrations_run_once_in_a_one_shot_service(services):
    migrate = services["migrate"]
    assert command_argv(migrate) == ["python", "manage.py", "migrate", "--no-input"]
    assert migrate["restart"] == "no"
    assert "ports" not in migrate
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    # Nobody else migrates, so `--scale web=3` starts three gunicorns and no extra migration.
    others = [name for name, service in services.items() if name != "migrate" and "command" in service]
    assert [name for name in others if "migrate" in command_argv(services[name])] == []


@pytest.mark.parametrize("name", PORTAL)
def test_the_portal_waits_for_the_migration_and_redis(services, name):
    depends_on = services[name]["depends_on"]
    assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
    assert depends_on["redis"] == {"condition": "service_healthy"}


def test_the_one_shot_and_the_portal_run_the_same_image_and_settings(services):
    shared = ("build", "environment", "env_file", "secrets")
    for name in ("migrate", *PORTAL):
        assert {key: services[name][key] for key in shared} == {key: services["web"][key] for key in shared}


def test_every_published_port_is_on_loopback_only(services):
    published = [(name, port) for name, service in services.items() for port in service.get("ports", [])]
    assert {name for name, _port in published} == {"web", "mailpit", "rbldnsd"}
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name} publishes {port!r}"


def test_gunicorn_listens_inside_its_container_where_the_published_port_leads(services):
    web = services["web"]
    assert command_argv(web)[:3] == ["gunicorn", "--bind", "0.0.0.0:8000"]
    assert web["ports"] == ["127.0.0.1:8000:8000"]


@pytest.mark.parametrize("name", ("web", "worker", "beat", "postgres", "redis"))
def test_long_running_services_have_a_health_check(services, name):
    check = services[name]["healthcheck"]
    assert check["test"] and check["interval"] and check["retries"] >= 1


def test_the_worker_health_check_pings_this_worker_through_the_broker(services):
    argv = healthcheck_argv(services["worker"])
    assert argv[:2] == ["/bin/sh", "-c"]
    # $$ in the file is a literal $ for the shell: the container's own node name.
    assert "celery -A delist_portal inspect ping" in argv[2]
    assert "--destination celery@$HOSTNAME" in argv[2]


def test_the_beat_health_check_is_the_schedule_age_check(services):
    assert healthcheck_argv(services["beat"]) == ["python", "-m", "delist_portal.beat_health"]
    # Beat must use the schedule file the check reads: the one settings name (VAR_DIR).
    assert "--schedule" not in command_argv(services["beat"])
    assert "-s" not in command_argv(services["beat"])


def test_secrets_come_from_files_and_reach_the_portal_as_file_variables(compose, services):
    secrets = compose["secrets"]
    assert set(secrets) == {"secret_key", "postgres_password", "export_token", "metrics_token"}
    assert all(secret["file"] == f"./secrets/{name}" for name, secret in secrets.items())
    environment = services["web"]["environment"]
    for name in secrets:
        variable = "DATABASE_PASSWORD" if name == "postgres_password" else name.upper()
        assert environment[f"{variable}_FILE"] == f"/run/secrets/{name}"
        assert variable not in environment
    assert set(services["web"]["secrets"]) == set(secrets)
    postgres = services["postgres"]
    assert postgres["secrets"] == ["postgres_password"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"


def test_no_password_or_key_is_written_in_the_file(services):
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            if SECRET_WORDS.search(variable):
                assert variable.endswith("_FILE"), f"{name} sets {variable} in the compose file"
                assert value.startswith("/run/secrets/")
            if "://" in str(value):
                assert urlsplit(str(value)).password is None, f"{name}: {variable} holds a password"


def test_the_secret_files_stay_out_of_git_and_out_of_the_image():
    assert "secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    assert "secrets" in (ROOT / ".dockerignore").read_text().splitlines()


def test_mailpit_only_comes_with_the_try_profile_and_catches_the_portal_mail(services):
    assert services["mailpit"]["profiles"] == ["try"]
    assert [name for name, service in services.items() if "profiles" in service] == ["mailpit"]
    assert services["mailpit"]["image"].startswith("axllent/mailpit:v")
    # Without EMAIL_URL in .env the portal's mail goes to Mailpit's SMTP port.
    assert services["worker"]["environment"]["EMAIL_URL"] == "smtp://mailpit:1025"
    # EMAIL_URL set (even empty, to use EMAIL_URL_FILE) is passed on as it is.
    set_by_ops = load({"EMAIL_URL": "smtp+tls://relay.example.org:587"})
    assert set_by_ops["services"]["worker"]["environment"]["EMAIL_URL"] == "smtp+tls://relay.example.org:587"
    assert load({"EMAIL_URL": ""})["services"]["worker"]["environment"]["EMAIL_URL"] == ""


def test_rbldnsd_serves_the_exports_the_worker_writes(services):
    worker, rbldnsd = services["worker"], services["rbldnsd"]
    export_dir = worker["environment"]["EXPORT_DIR"]
    assert f"exports:{export_dir}" in worker["volumes"]
    assert "exports:/exports:ro" in rbldnsd["volumes"]
    assert rbldnsd["build"] == {"context": "docker", "dockerfile": "rbldnsd.Dockerfile"}
    assert (ROOT / "docker" / "rbldnsd.Dockerfile").exists()
    assert rbldnsd["environment"]["DNSBL_ZONE"] == "bl.example.org"
    assert rbldnsd["ports"] == ["127.0.0.1:530:530/udp"]


def test_ports_and_the_zone_follow_the_environment():
    services = load({"WEB_PORT": "8000-8002", "DNSBL_ZONE": "bl.example.net", "DNSBL_PORT": "5353"})[
        "services"
    ]
    assert services["web"]["ports"] == ["127.0.0.1:8000-8002:8000"]
    assert services["rbldnsd"]["ports"] == ["127.0.0.1:5353:530/udp"]
    assert services["rbldnsd"]["environment"]["DNSBL_ZONE"] == "bl.example.net"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_restart_and_keep_their_logs_bounded(services, name):
    service = services[name]
    assert service["restart"] == "unless-stopped"
    assert service["logging"]["options"]["max-size"]


@pytest.mark.parametrize("name", ("web", "worker", "beat", "postgres", "redis", "rbldnsd"))
def test_long_running_services_have_a_memory_limit(services, name):
    assert re.fullmatch(r"\d+[MG]", services[name]["deploy"]["resources"]["limits"]["memory"])


def test_every_image_has_a_version_tag(services):
    for name, service in services.items():
        if "image" in service:
            assert re.search(r":[\w.-]+$", service["image"]) and not service["image"].endswith(":latest"), (
                name
            )


def test_the_portal_image_runs_as_an_unprivileged_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)$", dockerfile, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_the_merge_anchor_is_where_the_shared_settings_live():
    # The file as written: the portal services share one anchor, so they cannot drift apart.
    text = (ROOT / "docker-compose.yml").read_text()
    assert text.count("<<: *portal") == 4
    assert "POSTGRES_PASSWORD:" not in text and "SECRET_KEY:" not in text
    assert raw()["services"]["web"]["environment"]["EMAIL_URL"] == "${EMAIL_URL-smtp://mailpit:1025}"
