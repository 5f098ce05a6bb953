"""Settings, read once from DOCKYARD_* environment variables.

This is the only module that reads ``os.environ``; everything else receives a ``Settings``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

OSV_EXPORTS = "https://osv-vulnerabilities.storage.googleapis.com"
# osv.dev's per-ecosystem exports of the ecosystems the scanner detects.
# Feed names that are not URLs or paths: NVD's CVE API 2.0 and GitHub's advisory database (its archive).
NVD_FEED, GHSA_FEED = "nvd", "ghsa"
# The Node.js security WG's advisories of the runtime itself (osv.dev carries none): one index of them all.
NODEJS_CORE_INDEX = "https://raw.githubusercontent.com/nodejs/security-wg/main/vuln/core/index.json"
GHSA_ARCHIVE = "https://github.com/github/advisory-database/archive/refs/heads/main.zip"
# Alpine's own security database for edge, the rolling branch: osv.dev's Alpine export has releases only.
ALPINE_EDGE_SECDB = tuple(f"https://secdb.alpinelinux.org/edge/{repo}.json" for repo in ("main", "community"))
# Then the two severity sources: NVD's CVE API 2.0 and GitHub's advisory database (scanning.severity).
DEFAULT_VULNDB_SOURCES: tuple[str, ...] = (
    *(
        f"{OSV_EXPORTS}/{ecosystem}/all.zip"
        for ecosystem in ("Debian", "Alpine", "PyPI", "npm", "Go", "Maven")
    ),
    *ALPINE_EDGE_SECDB,
    NODEJS_CORE_INDEX,
    NVD_FEED,
    GHSA_FEED,
)
# Not ours, but read here (the only module that reads the environment): where skopeo, podman and docker
# keep registry credentials, for `dockyard scan docker://...`.
REGISTRY_AUTH_VARIABLES = ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "HOME", "XDG_RUNTIME_DIR")

DEFAULT_MAIL_FROM = "dockyard <dockyard@localhost>"

# name -> (default, description); the README's configuration table is generated from this.
DOCUMENTED: dict[str, tuple[str, str]] = {
    "DOCKYARD_LISTEN": ("127.0.0.1:5000", "host:port the HTTP server binds to"),
    "DOCKYARD_PUBLIC_URL": ("http://<DOCKYARD_LISTEN>", "external base URL (token realm, upload Locations)"),
    "DOCKYARD_DATA_DIR": ("./var", "SQLite database, blobs, upload sessions and signing keys"),
    "DOCKYARD_DATABASE_URL": (
        "sqlite:///<DATA_DIR>/dockyard.db",
        "SQLAlchemy URL; postgresql+psycopg://... at scale",
    ),
    "DOCKYARD_ADMIN_PASSWORD": (
        "(generated, printed once)",
        "password of the `admin` user created on first start",
    ),
    "DOCKYARD_SERVICE_NAME": ("dockyard", "the `service` of registry tokens"),
    "DOCKYARD_TOKEN_TTL": ("300", "lifetime of registry bearer tokens, seconds"),
    "DOCKYARD_WORKERS": ("1", "server worker processes"),
    "DOCKYARD_UPLOAD_TTL": ("86400", "seconds an idle upload session lives before `dockyard gc` removes it"),
    "DOCKYARD_GC_GRACE": ("3600", "seconds a fresh, unreferenced blob is kept by `dockyard gc`"),
    "DOCKYARD_MAX_MANIFEST_BYTES": ("4194304", "largest manifest accepted"),
    "DOCKYARD_LOG_LEVEL": ("INFO", "log level"),
    "DOCKYARD_JOB_WORKERS": (
        "1",
        "threads per server process that run background jobs (image scans, re-matches, feed updates); "
        "they yield to requests (a job waits for 50 ms without one, at most 1 s), so scans do not slow "
        "pushes and pulls; 0: none (run `dockyard worker` instead)",
    ),
    "DOCKYARD_VULNDB_SOURCES": (
        ",".join(DEFAULT_VULNDB_SOURCES),
        "comma-separated feeds `dockyard vulndb update` and the scheduled updates read: osv.dev zips, URLs, "
        "directories or files, and the names `nvd` (NVD's CVE API 2.0) and `ghsa` (GitHub's advisory "
        "database), the severity sources",
    ),
    "DOCKYARD_NVD_API_KEY": (
        "(none)",
        "an NVD API key for the `nvd` feed: 50 requests per 30 s instead of 5 (a full first fetch then takes "
        "about 2 minutes instead of 15)",
    ),
    "DOCKYARD_CACHE_DIR": (
        "($XDG_CACHE_HOME or ~/.cache)/dockyard",
        "where `dockyard scan` keeps what it read from each layer, keyed by layer digest and indexer version",
    ),
    "DOCKYARD_SCAN_WORKERS": (
        "(the CPUs it may run on, at most 4)",
        "processes `dockyard scan` reads an image's local layers in, beside its own start-up (at most one "
        "per layer); 0: read them in the scanning process",
    ),
    "DOCKYARD_VULNDB_INTERVAL": (
        "86400",
        "seconds between the job workers' feed updates (also run at first start when the database has no "
        "advisories); 0: never",
    ),
    "DOCKYARD_PULL_EVENT_INTERVAL": (
        "0.05",
        "seconds between batched writes of pull audit rows (0: each pull writes its own, in its request)",
    ),
    "DOCKYARD_BLOB_LISTEN": (
        "<host of DOCKYARD_LISTEN>:<its port + 1>",
        "host:port of the blob delivery server: blob GETs redirect there to a signed URL served zero-copy; "
        "`off`: the main server sends blobs itself. Off by default when DOCKYARD_PUBLIC_URL is set and "
        "DOCKYARD_BLOB_PUBLIC_URL is not",
    ),
    "DOCKYARD_BLOB_PUBLIC_URL": (
        "http://<DOCKYARD_BLOB_LISTEN>",
        "external base URL of the blob delivery server (the Location of blob redirects)",
    ),
    "DOCKYARD_SMTP_URL": (
        "(none: mail is written to <DATA_DIR>/mail)",
        "SMTP server for outgoing mail: `smtp://host:25` (STARTTLS when offered), `smtp+starttls://host:587` "
        "(STARTTLS required), `smtps://host:465`; `user:password@` (URL-encoded) to log in, "
        "`?timeout=30`, `?cafile=PATH`",
    ),
    "DOCKYARD_MAIL_FROM": (DEFAULT_MAIL_FROM, "the From of outgoing mail (its domain names the Message-IDs)"),
    "DOCKYARD_SIGNUP": (
        "open",
        "`open`: anyone may create an account at /ui/signup (confirmed by email); `closed`: only "
        "administrators create accounts (API, CLI)",
    ),
    "DOCKYARD_HOLD_MAX_DAYS": ("30", "days a product stays on hold (a fix deadline missed) until revoked"),
    "DOCKYARD_REVOKED_PULL_DAYS": (
        "30",
        "days customers may still pull a revoked product's pinned digests (with a warning) before `DENIED`",
    ),
    "DOCKYARD_AUTO_APPROVE_FIXES": (
        "(true)",
        "approve and publish at once a revision that only repins digests, resolves findings and adds no "
        "Critical or Major one (`false`: every revision waits for a reviewer)",
    ),
    "DOCKYARD_COMPLIANCE_INTERVAL": (
        "60",
        "seconds between the job workers' compliance checks (fix-time clocks, holds, revocations)",
    ),
    "DOCKYARD_WEBHOOK_ALLOW_HTTP": (
        "(false)",
        "`true`: webhook endpoints may be plain http:// URLs (else https:// only)",
    ),
    "DOCKYARD_WEBHOOK_ALLOW_PRIVATE": (
        "(false)",
        "`true`: webhook endpoints may resolve to loopback, private, link-local or other non-public "
        "addresses (checked when an endpoint is saved and again, after DNS resolution, before every "
        "delivery)",
    ),
}
# DOCKYARD_BLOB_LISTEN's value that turns blob delivery off.
OFF = "off"
SIGNUP_MODES = ("open", "closed")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:5000"
    public_url: str = ""
    data_dir: Path = Path("./var")
    database_url: str = ""
    admin_password: str | None = None
    service_name: str = "dockyard"
    token_ttl: int = 300
    workers: int = 1
    upload_ttl: int = 86400
    gc_grace: int = 3600
    max_manifest_bytes: int = 4 * 1024 * 1024
    log_level: str = "INFO"
    # None unless asked for: the server reads 1 from the environment; tests run their jobs synchronously.
    job_workers: int = 0
    # 0 writes each pull's audit row in its request; > 0 batches them off the request path (the server).
    pull_event_interval: float = 0
    vulndb_sources: tuple[str, ...] = DEFAULT_VULNDB_SOURCES
    vulndb_interval: int = 0  # the environment default is 86400; tests schedule no feed downloads
    nvd_api_key: str | None = None
    cache_dir: Path | None = None  # None: the scan CLI keeps no layer cache
    scan_workers: int | None = None  # None: one per usable CPU, at most 4 (DOCKYARD_SCAN_WORKERS); 0: none
    # "off" unless asked for: the server derives <listen host>:<port + 1> from the environment; in-process
    # tests bind no second port.
    blob_listen: str = OFF
    blob_public_url: str = ""  # derived from blob_listen, as public_url is from listen
    smtp_url: str = ""  # empty: no mail server, mail is written to DATA_DIR/mail (email.senders)
    mail_from: str = DEFAULT_MAIL_FROM
    signup: str = "open"  # DOCKYARD_SIGNUP: whether anyone may create an account on the sign-up page
    hold_max_days: int = 30  # on hold this long, a listing is revoked
    revoked_pull_days: int = 30  # after revocation, pinned digests still pull (with a warning) this long
    auto_approve_fixes: bool = True  # the fast path for digest-only fix revisions
    compliance_interval: int = 0  # the environment default is 60; tests run the check themselves
    # Webhook targets (dockyard.webhooks.targets): https and public addresses only unless these say yes.
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    # REGISTRY_AUTH_VARIABLES that are set, as the registry image source wants them (its ``environ``).
    registry_auth_env: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())
        if not self.public_url:
            host, _, port = self.listen.rpartition(":")
            # A wildcard bind address is no address to give clients (it is the token realm).
            if host in ("0.0.0.0", "[::]", "::", ""):
                host = "127.0.0.1"
            object.__setattr__(self, "public_url", f"http://{host}:{port}")
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        if self.signup not in SIGNUP_MODES:
            raise ValueError(f"DOCKYARD_SIGNUP must be one of {', '.join(SIGNUP_MODES)}, not {self.signup!r}")
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'dockyard.db'}")
        self._derive_blob_delivery()

    def _derive_blob_delivery(self) -> None:
        if self.blob_listen.strip().lower() == OFF:
            object.__setattr__(self, "blob_listen", OFF)
            object.__setattr__(self, "blob_public_url", "")
            return
        host, port = split_address(self.blob_listen)  # ValueError on a bad address, at start
        if port == self.port and host == self.host:
            raise ValueError("DOCKYARD_BLOB_LISTEN must differ from DOCKYARD_LISTEN")
        if not self.blob_public_url:
            public_host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "::", "") else host
            object.__setattr__(self, "blob_public_url", f"http://{public_host}:{port}")
        object.__setattr__(self, "blob_public_url", self.blob_public_url.rstrip("/"))

    @property
    def signup_open(self) -> bool:
        """Whether anyone may create an account on the sign-up page (DOCKYARD_SIGNUP=open)."""
        return self.signup == "open"

    @property
    def blob_delivery(self) -> bool:
        """True when blob GETs redirect to the delivery server (DOCKYARD_BLOB_LISTEN is not ``off``)."""
        return self.blob_listen != OFF

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def registry_host(self) -> str:
        """host:port of the public URL, as registry clients name images."""
        return self.public_url.split("://", 1)[-1].split("/", 1)[0]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            return env.get(f"DOCKYARD_{name}", default)

        listen, public_url = get("LISTEN", "127.0.0.1:5000"), get("PUBLIC_URL", "")
        blob_public_url = get("BLOB_PUBLIC_URL", "")
        # Behind a proxy (an explicit public URL) a blob URL derived from a local address would not reach
        # clients: delivery is then off unless its own public URL is given too.
        proxied = bool(public_url) and not blob_public_url
        blob_listen = get("BLOB_LISTEN", "") or (OFF if proxied else next_port(listen))
        scan_workers = get("SCAN_WORKERS", "")
        return cls(
            listen=listen,
            public_url=public_url,
            data_dir=Path(get("DATA_DIR", "./var")),
            database_url=get("DATABASE_URL", ""),
            admin_password=env.get("DOCKYARD_ADMIN_PASSWORD") or None,
            service_name=get("SERVICE_NAME", "dockyard"),
            token_ttl=int(get("TOKEN_TTL", "300")),
            workers=int(get("WORKERS", "1")),
            upload_ttl=int(get("UPLOAD_TTL", "86400")),
            gc_grace=int(get("GC_GRACE", "3600")),
            max_manifest_bytes=int(get("MAX_MANIFEST_BYTES", str(4 * 1024 * 1024))),
            log_level=get("LOG_LEVEL", "INFO"),
            job_workers=int(get("JOB_WORKERS", "1")),
            pull_event_interval=float(get("PULL_EVENT_INTERVAL", "0.05")),
            vulndb_sources=split_sources(get("VULNDB_SOURCES", "")) or DEFAULT_VULNDB_SOURCES,
            vulndb_interval=int(get("VULNDB_INTERVAL", "86400")),
            nvd_api_key=get("NVD_API_KEY", "") or None,
            cache_dir=cache_dir(env),
            scan_workers=count("DOCKYARD_SCAN_WORKERS", scan_workers) if scan_workers.strip() else None,
            blob_listen=blob_listen,
            blob_public_url=blob_public_url,
            smtp_url=get("SMTP_URL", "").strip(),
            mail_from=get("MAIL_FROM", "").strip() or DEFAULT_MAIL_FROM,
            signup=get("SIGNUP", "open").strip().lower() or "open",
            hold_max_days=int(get("HOLD_MAX_DAYS", "30")),
            revoked_pull_days=int(get("REVOKED_PULL_DAYS", "30")),
            auto_approve_fixes=get("AUTO_APPROVE_FIXES", "true").strip().lower() not in FALSE_WORDS,
            compliance_interval=int(get("COMPLIANCE_INTERVAL", "60")),
            webhook_allow_http=flag(get("WEBHOOK_ALLOW_HTTP", "")),
            webhook_allow_private=flag(get("WEBHOOK_ALLOW_PRIVATE", "")),
            registry_auth_env={k: env[k] for k in REGISTRY_AUTH_VARIABLES if env.get(k)},
            extra={k: v for k, v in env.items() if k.startswith("DOCKYARD_")},
        )


def flag(value: str) -> bool:
    """A yes/no setting: true, 1, yes or on (any case) mean yes; anything else no."""
    return value.strip().lower() in ("1", "true", "yes", "on")


def count(name: str, text: str) -> int:
    """A number of things, 0 or more; else a ValueError that names the variable (the line the CLI prints),
    not int()'s "invalid literal" or a negative number silently taken for 0."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{name} must be a whole number, 0 or more, not {text!r}")
    return int(value)


def cache_dir(env: Mapping[str, str]) -> Path:
    """DOCKYARD_CACHE_DIR, else $XDG_CACHE_HOME/dockyard, else ~/.cache/dockyard."""
    if env.get("DOCKYARD_CACHE_DIR"):
        return Path(env["DOCKYARD_CACHE_DIR"])
    home = env.get("HOME") or str(Path.home())
    return Path(env.get("XDG_CACHE_HOME") or Path(home) / ".cache") / "dockyard"


def split_sources(text: str) -> tuple[str, ...]:
    """``a.zip, /data/feed`` -> ("a.zip", "/data/feed"): comma- or newline-separated, blanks dropped."""
    return tuple(part.strip() for part in text.replace("\n", ",").split(",") if part.strip())


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port); ValueError unless the port is 1-65535."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host, int(port)


def next_port(listen: str) -> str:
    """The listen address with the port after its own (the blob delivery server's default)."""
    host, port = split_address(listen)
    return f"{host}:{port + 1}" if port < 65535 else OFF
