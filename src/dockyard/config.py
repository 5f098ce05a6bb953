"""Settings, read once from DOCKYARD_* environment variables.

This is the only module that reads ``os.environ``; everything else receives a ``Settings``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
}


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
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())
        if not self.public_url:
            object.__setattr__(self, "public_url", f"http://{self.listen}")
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'dockyard.db'}")

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

        return cls(
            listen=get("LISTEN", "127.0.0.1:5000"),
            public_url=get("PUBLIC_URL", ""),
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
            extra={k: v for k, v in env.items() if k.startswith("DOCKYARD_")},
        )
