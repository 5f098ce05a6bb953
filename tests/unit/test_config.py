"""Settings: read once from DOCKYARD_* variables, with documented defaults and derived values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dockyard.config import DOCUMENTED, Settings


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.listen == "127.0.0.1:5000"
    assert s.public_url == "http://127.0.0.1:5000"
    assert s.data_dir == tmp_path / "var"
    assert s.data_dir.is_absolute()
    assert s.database_url == f"sqlite:///{tmp_path / 'var' / 'dockyard.db'}"
    assert s.admin_password is None
    assert s.service_name == "dockyard"
    assert (s.token_ttl, s.workers, s.upload_ttl, s.gc_grace) == (300, 1, 86400, 3600)
    assert s.max_manifest_bytes == 4 * 1024 * 1024
    assert s.log_level == "INFO"
    assert dict(s.extra) == {}
    assert (s.host, s.port, s.registry_host) == ("127.0.0.1", 5000, "127.0.0.1:5000")
    assert (s.blob_listen, s.blob_public_url, s.blob_delivery) == (
        "127.0.0.1:5001",
        "http://127.0.0.1:5001",
        True,
    )


def test_overrides(tmp_path: Path) -> None:
    env = {
        "DOCKYARD_LISTEN": "0.0.0.0:8080",
        "DOCKYARD_PUBLIC_URL": "https://registry.example.com/",
        "DOCKYARD_DATA_DIR": str(tmp_path / "data"),
        "DOCKYARD_DATABASE_URL": "postgresql+psycopg://u@db/dockyard",
        "DOCKYARD_ADMIN_PASSWORD": "s3cret-admin",
        "DOCKYARD_SERVICE_NAME": "registry.example.com",
        "DOCKYARD_TOKEN_TTL": "900",
        "DOCKYARD_WORKERS": "4",
        "DOCKYARD_UPLOAD_TTL": "600",
        "DOCKYARD_GC_GRACE": "60",
        "DOCKYARD_MAX_MANIFEST_BYTES": "1024",
        "DOCKYARD_LOG_LEVEL": "DEBUG",
        "HOME": "/root",
    }
    s = Settings.from_env(env)
    assert s.listen == "0.0.0.0:8080"
    assert s.public_url == "https://registry.example.com"  # no trailing slash
    assert s.data_dir == tmp_path / "data"
    assert s.database_url == "postgresql+psycopg://u@db/dockyard"
    assert s.admin_password == "s3cret-admin"
    assert s.service_name == "registry.example.com"
    assert (s.token_ttl, s.workers, s.upload_ttl, s.gc_grace) == (900, 4, 600, 60)
    assert s.max_manifest_bytes == 1024
    assert s.log_level == "DEBUG"
    assert (s.host, s.port) == ("0.0.0.0", 8080)
    assert s.registry_host == "registry.example.com"
    assert set(s.extra) == {k for k in env if k.startswith("DOCKYARD_")}  # HOME is not ours


def test_public_url_is_derived_from_listen() -> None:
    assert Settings.from_env({"DOCKYARD_LISTEN": "10.0.0.5:5443"}).public_url == "http://10.0.0.5:5443"
    s = Settings.from_env({"DOCKYARD_LISTEN": "[::1]:5000"})
    assert (s.public_url, s.host, s.port, s.registry_host) == (
        "http://[::1]:5000",
        "[::1]",
        5000,
        "[::1]:5000",
    )


def test_public_url_with_a_path_prefix() -> None:
    s = Settings.from_env({"DOCKYARD_PUBLIC_URL": "https://example.com:8443/registry/"})
    assert s.public_url == "https://example.com:8443/registry"
    assert s.registry_host == "example.com:8443"


def test_database_url_follows_the_data_dir(tmp_path: Path) -> None:
    s = Settings.from_env({"DOCKYARD_DATA_DIR": str(tmp_path / "elsewhere")})
    assert s.database_url == f"sqlite:///{tmp_path / 'elsewhere' / 'dockyard.db'}"


def test_relative_data_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({"DOCKYARD_DATA_DIR": "rel/dir"}).data_dir == tmp_path / "rel" / "dir"


def test_empty_admin_password_means_none() -> None:
    assert Settings.from_env({"DOCKYARD_ADMIN_PASSWORD": ""}).admin_password is None


def test_from_env_reads_os_environ_only_without_a_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_SERVICE_NAME", "from-the-environment")
    assert Settings.from_env().service_name == "from-the-environment"
    assert Settings.from_env({}).service_name == "dockyard"


@pytest.mark.parametrize("name", ["TOKEN_TTL", "WORKERS", "UPLOAD_TTL", "GC_GRACE", "MAX_MANIFEST_BYTES"])
def test_numbers_must_be_numbers(name: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_env({f"DOCKYARD_{name}": "lots"})


def test_settings_are_immutable() -> None:
    s = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.listen = "0.0.0.0:1"  # type: ignore[misc]


def test_direct_construction_applies_the_same_derivations(tmp_path: Path) -> None:
    s = Settings(listen="127.0.0.1:6000", data_dir=tmp_path)
    assert s.public_url == "http://127.0.0.1:6000"
    assert s.database_url == f"sqlite:///{tmp_path / 'dockyard.db'}"


def test_every_documented_variable_is_read_and_its_default_is_true(tmp_path: Path, monkeypatch) -> None:
    """The README's configuration table is generated from DOCUMENTED: it must match what from_env does."""
    monkeypatch.chdir(tmp_path)
    defaults = Settings.from_env({})
    field_of = {
        "DOCKYARD_LISTEN": "listen",
        "DOCKYARD_PUBLIC_URL": "public_url",
        "DOCKYARD_DATA_DIR": "data_dir",
        "DOCKYARD_DATABASE_URL": "database_url",
        "DOCKYARD_ADMIN_PASSWORD": "admin_password",
        "DOCKYARD_SERVICE_NAME": "service_name",
        "DOCKYARD_TOKEN_TTL": "token_ttl",
        "DOCKYARD_WORKERS": "workers",
        "DOCKYARD_UPLOAD_TTL": "upload_ttl",
        "DOCKYARD_GC_GRACE": "gc_grace",
        "DOCKYARD_MAX_MANIFEST_BYTES": "max_manifest_bytes",
        "DOCKYARD_LOG_LEVEL": "log_level",
        "DOCKYARD_JOB_WORKERS": "job_workers",
        "DOCKYARD_VULNDB_SOURCES": "vulndb_sources",
        "DOCKYARD_VULNDB_INTERVAL": "vulndb_interval",
        "DOCKYARD_NVD_API_KEY": "nvd_api_key",
        "DOCKYARD_CACHE_DIR": "cache_dir",
        "DOCKYARD_SCAN_WORKERS": "scan_workers",
        "DOCKYARD_PULL_EVENT_INTERVAL": "pull_event_interval",
        "DOCKYARD_BLOB_LISTEN": "blob_listen",
        "DOCKYARD_BLOB_PUBLIC_URL": "blob_public_url",
        "DOCKYARD_SMTP_URL": "smtp_url",
        "DOCKYARD_MAIL_FROM": "mail_from",
        "DOCKYARD_SIGNUP": "signup",
        "DOCKYARD_WEBHOOK_ALLOW_HTTP": "webhook_allow_http",
        "DOCKYARD_WEBHOOK_ALLOW_PRIVATE": "webhook_allow_private",
        "DOCKYARD_HOLD_MAX_DAYS": "hold_max_days",
        "DOCKYARD_REVOKED_PULL_DAYS": "revoked_pull_days",
        "DOCKYARD_AUTO_APPROVE_FIXES": "auto_approve_fixes",
        "DOCKYARD_COMPLIANCE_INTERVAL": "compliance_interval",
    }
    assert set(DOCUMENTED) == set(field_of)
    samples = {
        "DOCKYARD_LISTEN": "127.0.0.2:7000",
        "DOCKYARD_PUBLIC_URL": "https://x.example",
        "DOCKYARD_DATA_DIR": str(tmp_path / "d"),
        "DOCKYARD_DATABASE_URL": "sqlite:///x.db",
        "DOCKYARD_ADMIN_PASSWORD": "pw-pw-pw-pw",
        "DOCKYARD_SERVICE_NAME": "svc",
        "DOCKYARD_TOKEN_TTL": "7",
        "DOCKYARD_WORKERS": "3",
        "DOCKYARD_UPLOAD_TTL": "8",
        "DOCKYARD_GC_GRACE": "9",
        "DOCKYARD_MAX_MANIFEST_BYTES": "10",
        "DOCKYARD_LOG_LEVEL": "ERROR",
        "DOCKYARD_JOB_WORKERS": "0",
        "DOCKYARD_VULNDB_SOURCES": "/srv/feeds",
        "DOCKYARD_VULNDB_INTERVAL": "0",
        "DOCKYARD_NVD_API_KEY": "key",
        "DOCKYARD_CACHE_DIR": str(tmp_path / "cache"),
        "DOCKYARD_SCAN_WORKERS": "0",
        "DOCKYARD_PULL_EVENT_INTERVAL": "0",
        "DOCKYARD_BLOB_LISTEN": "127.0.0.2:7001",
        "DOCKYARD_BLOB_PUBLIC_URL": "https://blobs.example",
        "DOCKYARD_SMTP_URL": "smtps://mail.example",
        "DOCKYARD_MAIL_FROM": "store <store@example.org>",
        "DOCKYARD_SIGNUP": "closed",
        "DOCKYARD_WEBHOOK_ALLOW_HTTP": "true",
        "DOCKYARD_WEBHOOK_ALLOW_PRIVATE": "yes",
        "DOCKYARD_HOLD_MAX_DAYS": "14",
        "DOCKYARD_REVOKED_PULL_DAYS": "7",
        "DOCKYARD_AUTO_APPROVE_FIXES": "0",
        "DOCKYARD_COMPLIANCE_INTERVAL": "30",
    }
    for var, field in field_of.items():
        changed = Settings.from_env({var: samples[var]})
        assert getattr(changed, field) != getattr(defaults, field), var
        default_text = DOCUMENTED[var][0]
        if default_text.startswith(("(", "<", "http://<", "sqlite:///<")):
            continue  # derived or generated: described, not a literal value
        actual = getattr(defaults, field)
        if isinstance(actual, tuple):  # lists are documented as the comma-separated text that sets them
            actual = ",".join(actual)
        expected = Path(default_text).resolve() if field == "data_dir" else default_text
        assert str(actual) == str(expected), var


def test_vulndb_sources_default_to_the_osv_exports_and_the_severity_sources() -> None:
    default = Settings.from_env({}).vulndb_sources
    assert default == (
        *(
            f"https://osv-vulnerabilities.storage.googleapis.com/{e}/all.zip"
            for e in ("Debian", "Alpine", "PyPI", "npm", "Go", "Maven")
        ),
        "https://secdb.alpinelinux.org/edge/main.json",
        "https://secdb.alpinelinux.org/edge/community.json",
        "https://raw.githubusercontent.com/nodejs/security-wg/main/vuln/core/index.json",
        "nvd",
        "ghsa",
    )
    assert Settings.from_env({"DOCKYARD_VULNDB_SOURCES": ""}).vulndb_sources == default
    env = {"DOCKYARD_VULNDB_SOURCES": " /srv/a, https://x.example/all.zip ,,\n/srv/b "}
    assert Settings.from_env(env).vulndb_sources == ("/srv/a", "https://x.example/all.zip", "/srv/b")


def test_registry_auth_variables_are_read_here_and_only_those() -> None:
    env = {"HOME": "/home/a", "DOCKER_CONFIG": "/d", "REGISTRY_AUTH_FILE": "/r.json", "PATH": "/bin"}
    env |= {"XDG_RUNTIME_DIR": ""}
    assert dict(Settings.from_env(env).registry_auth_env) == {
        "HOME": "/home/a",
        "DOCKER_CONFIG": "/d",
        "REGISTRY_AUTH_FILE": "/r.json",
    }
    assert dict(Settings.from_env({}).registry_auth_env) == {}


def test_wildcard_listen_address_gives_a_loopback_public_url() -> None:
    from dockyard.config import Settings

    assert Settings(listen="0.0.0.0:5000").public_url == "http://127.0.0.1:5000"
    assert Settings(listen="10.1.2.3:5000").public_url == "http://10.1.2.3:5000"


# -- blob delivery ----------------------------------------------------------------------------------------
def test_blob_delivery_listens_on_the_next_port_of_listen() -> None:
    s = Settings.from_env({"DOCKYARD_LISTEN": "10.0.0.5:8080"})
    assert (s.blob_listen, s.blob_public_url) == ("10.0.0.5:8081", "http://10.0.0.5:8081")
    s = Settings.from_env({"DOCKYARD_LISTEN": "0.0.0.0:5000"})  # a wildcard is no address to redirect to
    assert (s.blob_listen, s.blob_public_url) == ("0.0.0.0:5001", "http://127.0.0.1:5001")
    s = Settings.from_env({"DOCKYARD_LISTEN": "[::1]:5000"})
    assert (s.blob_listen, s.blob_public_url) == ("[::1]:5001", "http://[::1]:5001")
    assert Settings.from_env({"DOCKYARD_LISTEN": "127.0.0.1:65535"}).blob_delivery is False


def test_blob_delivery_can_be_turned_off_and_is_off_in_code() -> None:
    for value in ("off", "OFF", " off "):
        s = Settings.from_env(
            {"DOCKYARD_BLOB_LISTEN": value, "DOCKYARD_BLOB_PUBLIC_URL": "https://b.example"}
        )
        assert (s.blob_listen, s.blob_public_url, s.blob_delivery) == ("off", "", False)
    # Settings() in code (in-process tests) binds no second port unless asked to.
    s = Settings(listen="127.0.0.1:6000")
    assert (s.blob_listen, s.blob_public_url, s.blob_delivery) == ("off", "", False)
    s = Settings(listen="127.0.0.1:6000", blob_listen="127.0.0.1:6001")
    assert (s.blob_public_url, s.blob_delivery) == ("http://127.0.0.1:6001", True)


def test_behind_a_proxy_delivery_is_off_unless_its_public_url_is_given() -> None:
    proxied = {"DOCKYARD_PUBLIC_URL": "https://registry.example.com"}
    assert Settings.from_env(proxied).blob_delivery is False
    s = Settings.from_env(proxied | {"DOCKYARD_BLOB_PUBLIC_URL": "https://blobs.example.com/"})
    assert (s.blob_listen, s.blob_public_url) == ("127.0.0.1:5001", "https://blobs.example.com")
    s = Settings.from_env(proxied | {"DOCKYARD_BLOB_LISTEN": "10.0.0.5:9000"})  # asked for explicitly
    assert (s.blob_listen, s.blob_public_url) == ("10.0.0.5:9000", "http://10.0.0.5:9000")


@pytest.mark.parametrize(
    "value", ["5001", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:0", "127.0.0.1:70000", "h:\u0661"]
)
def test_blob_listen_must_be_host_and_port(value: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"DOCKYARD_BLOB_LISTEN": value})


def test_blob_listen_must_differ_from_listen() -> None:
    with pytest.raises(ValueError, match="differ"):
        Settings.from_env({"DOCKYARD_LISTEN": "127.0.0.1:5000", "DOCKYARD_BLOB_LISTEN": "127.0.0.1:5000"})


def test_signup_is_open_by_default_and_closed_on_request() -> None:
    assert Settings.from_env({}).signup_open
    assert not Settings.from_env({"DOCKYARD_SIGNUP": " Closed "}).signup_open
    with pytest.raises(ValueError, match="DOCKYARD_SIGNUP"):
        Settings.from_env({"DOCKYARD_SIGNUP": "invite-only"})


@pytest.mark.parametrize("value", ["abc", "-1", "2.5", "\u0663"])
def test_scan_workers_must_be_a_count_and_the_error_names_it(value: str) -> None:
    """The CLI prints the message as its one line: it must name the variable, not int()'s parsing."""
    with pytest.raises(ValueError, match=r"^DOCKYARD_SCAN_WORKERS must be a whole number, 0 or more"):
        Settings.from_env({"DOCKYARD_SCAN_WORKERS": value})
    assert Settings.from_env({"DOCKYARD_SCAN_WORKERS": " 3 "}).scan_workers == 3
    assert Settings.from_env({"DOCKYARD_SCAN_WORKERS": ""}).scan_workers is None
