"""What the demo store holds: six publishers and twenty products across the categories, written as the
manifests their publishers would submit (images by name; the seeder adds repositories, logos and tiers)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DemoPublisher:
    org: str
    legal_name: str
    website: str
    phone: str
    colour: tuple[int, int, int]
    story: str


@dataclass(frozen=True)
class DemoProduct:
    org: str
    slug: str
    name: str
    category: str
    short: str
    tags: tuple[str, ...]
    images: tuple[str, ...] = ("server",)
    price: int | None = None  # the paid tier's monthly price in cents (None: free only)
    arches: tuple[str, ...] = ("amd64",)
    # What the store team did with it: published, certified (published with a badge), updated (a second
    # revision published over the first), submitted, in_review, changes_requested, resubmitted, approved,
    # rejected, withdrawn, draft.
    state: str = "published"
    free_tier: bool = True  # a free Community tier besides the paid one
    # Alpine packages in its base layer ("name", "version"): old ones give the scanner real findings.
    packages: tuple[tuple[str, str], ...] = field(default=(("musl", "1.2.4_git20230717-r4"),))


PUBLISHERS = [
    DemoPublisher(
        "northwind",
        "Northwind Data Ltd",
        "https://northwind.example",
        "+442071838750",
        (37, 99, 235),
        "Northwind builds **databases and caches** for teams that run their own infrastructure.\n\n"
        "Founded in 2014 in London; 40 engineers; support in English and German.",
    ),
    DemoPublisher(
        "bluefin",
        "Bluefin Networks GmbH",
        "https://bluefin.example",
        "+493023125000",
        (8, 145, 178),
        "Bluefin makes **networking** software: proxies, meshes and load balancers.",
    ),
    DemoPublisher(
        "kestrel",
        "Kestrel Security Inc.",
        "https://kestrel.example",
        "+14155552671",
        (190, 18, 60),
        "Kestrel secures containers from build to run: **scanners, gateways, secret stores**.",
    ),
    DemoPublisher(
        "quarry",
        "Quarry Analytics SAS",
        "https://quarry.example",
        "+33142685300",
        (124, 58, 237),
        "Quarry turns logs and metrics into answers: **analytics and monitoring**.",
    ),
    DemoPublisher(
        "lumen",
        "Lumen Labs AB",
        "https://lumen.example",
        "+46850551000",
        (202, 138, 4),
        "Lumen builds **developer tools and machine-learning** runtimes.",
    ),
    DemoPublisher(
        "harbourline",
        "Harbourline Systems Pty",
        "https://harbourline.example",
        "+61292507111",
        (5, 150, 105),
        "Harbourline ships **storage, messaging and web servers** for the cloud.",
    ),
]

OPENSSL_OLD = (("musl", "1.2.4_git20230717-r4"), ("libcrypto3", "3.1.4-r0"), ("libssl3", "3.1.4-r0"))
CURL_OLD = (("musl", "1.2.4_git20230717-r4"), ("curl", "8.5.0-r0"), ("libcurl", "8.5.0-r0"))

PRODUCTS = [
    DemoProduct(
        "northwind",
        "tidepool-db",
        "Tidepool DB",
        "Database",
        "A PostgreSQL-compatible SQL database with built-in replication and point-in-time recovery.",
        ("sql", "postgres", "replication"),
        ("server", "backup"),
        4900,
        ("amd64", "arm64"),
        "certified",
        OPENSSL_OLD,
    ),
    DemoProduct(
        "northwind",
        "swiftcache",
        "SwiftCache",
        "Database",
        "An in-memory key-value cache, Redis-protocol compatible, with persistence.",
        ("cache", "redis", "key-value"),
        arches=("amd64", "arm64"),
        state="updated",
    ),
    DemoProduct(
        "northwind",
        "ledger-kv",
        "Ledger KV",
        "Storage",
        "An append-only, verifiable key-value store for audit trails.",
        ("audit", "key-value"),
        price=9900,
        free_tier=False,
    ),
    DemoProduct(
        "northwind",
        "docstore",
        "DocStore",
        "Database",
        "A document database with JSON queries.",
        ("json", "documents"),
        state="in_review",
    ),
    DemoProduct(
        "bluefin",
        "finproxy",
        "FinProxy",
        "Networking",
        "A fast HTTP/2 and gRPC reverse proxy with automatic TLS.",
        ("proxy", "http2", "grpc", "tls"),
        ("proxy",),
        2900,
        ("amd64", "arm64"),
        "certified",
    ),
    DemoProduct(
        "bluefin",
        "meshline",
        "Meshline",
        "Networking",
        "A lightweight service mesh sidecar with mTLS and retries.",
        ("service-mesh", "mtls"),
        ("sidecar", "control-plane"),
        price=19900,
        packages=OPENSSL_OLD + CURL_OLD[1:],
        free_tier=False,
    ),
    DemoProduct(
        "bluefin",
        "balance",
        "Balance LB",
        "Networking",
        "A layer-4 load balancer for bare metal and VMs.",
        ("load-balancer", "tcp"),
    ),
    DemoProduct(
        "bluefin",
        "dns-edge",
        "DNS Edge",
        "Networking",
        "An authoritative DNS server with an API.",
        ("dns",),
        state="changes_requested",
    ),
    DemoProduct(
        "kestrel",
        "vaultkeeper",
        "Vaultkeeper",
        "Security",
        "Secrets management: dynamic database credentials, encryption as a service, audit.",
        ("secrets", "encryption", "pki"),
        ("server",),
        14900,
        ("amd64", "arm64"),
        "certified",
    ),
    DemoProduct(
        "kestrel",
        "gatekeeper-waf",
        "Gatekeeper WAF",
        "Security",
        "A web application firewall with the OWASP core rule set.",
        ("waf", "owasp", "firewall"),
        price=7900,
        packages=OPENSSL_OLD,
        free_tier=False,
    ),
    DemoProduct(
        "kestrel",
        "sigil",
        "Sigil",
        "Security",
        "Sign and verify container images and SBOMs.",
        ("signing", "sbom", "supply-chain"),
    ),
    DemoProduct(
        "quarry",
        "lookout",
        "Lookout",
        "Monitoring",
        "Metrics, dashboards and alerts in one container.",
        ("metrics", "alerts", "dashboards"),
        ("server", "agent"),
        3900,
        ("amd64", "arm64"),
        "certified",
    ),
    DemoProduct(
        "quarry",
        "logfalls",
        "Logfalls",
        "Analytics",
        "Log search and analytics at terabyte scale.",
        ("logs", "search", "analytics"),
        price=9900,
    ),
    DemoProduct(
        "quarry",
        "tracer",
        "Tracer",
        "Monitoring",
        "Distributed tracing with OpenTelemetry.",
        ("tracing", "opentelemetry"),
        state="submitted",
    ),
    DemoProduct(
        "lumen",
        "forge-ci",
        "Forge CI",
        "Developer Tools",
        "A self-hosted CI runner with caching and matrix builds.",
        ("ci", "builds", "runner"),
        ("runner",),
        arches=("amd64", "arm64"),
    ),
    DemoProduct(
        "lumen",
        "notebook-hub",
        "Notebook Hub",
        "Machine Learning",
        "Jupyter notebooks for teams, with GPU scheduling.",
        ("jupyter", "notebooks", "gpu"),
        price=4900,
    ),
    DemoProduct(
        "lumen",
        "inferno",
        "Inferno",
        "Machine Learning",
        "Serve ML models over HTTP and gRPC with batching.",
        ("inference", "models", "serving"),
        price=19900,
        state="approved",
    ),
    DemoProduct(
        "lumen",
        "pylite",
        "PyLite",
        "Programming Languages",
        "A slim Python runtime image for production services.",
        ("python", "runtime"),
    ),
    DemoProduct(
        "harbourline",
        "cargohold",
        "Cargohold",
        "Storage",
        "S3-compatible object storage with erasure coding.",
        ("s3", "object-storage"),
        ("server",),
        5900,
        ("amd64", "arm64"),
    ),
    DemoProduct(
        "harbourline",
        "relay-mq",
        "Relay MQ",
        "Messaging",
        "A message broker speaking AMQP and MQTT.",
        ("amqp", "mqtt", "queues"),
    ),
    DemoProduct(
        "harbourline",
        "quayside-web",
        "Quayside Web",
        "Web Servers",
        "A static and dynamic web server with HTTP/3.",
        ("http3", "web", "static-sites"),
        arches=("amd64", "arm64"),
    ),
    DemoProduct(
        "harbourline",
        "beacon-os",
        "Beacon OS",
        "Operating Systems",
        "A minimal container host OS image.",
        ("os", "minimal"),
        state="rejected",
    ),
    DemoProduct(
        "northwind",
        "chronos-tsdb",
        "Chronos TSDB",
        "Database",
        "A time-series database for metrics and IoT data, with downsampling.",
        ("time-series", "iot", "metrics"),
        price=2900,
    ),
    DemoProduct(
        "kestrel",
        "sentinel-ids",
        "Sentinel IDS",
        "Security",
        "Network intrusion detection for container hosts.",
        ("ids", "network-security"),
        arches=("amd64", "arm64"),
    ),
    DemoProduct(
        "quarry",
        "pulse-bi",
        "Pulse BI",
        "Business Software",
        "Business dashboards and reports on your own database.",
        ("bi", "reports", "dashboards"),
        price=2400,
        free_tier=False,
    ),
    DemoProduct(
        "harbourline",
        "drydock-backup",
        "Drydock Backup",
        "Storage",
        "Incremental, encrypted backups of volumes to any object store.",
        ("backup", "encryption", "volumes"),
        packages=OPENSSL_OLD + CURL_OLD[1:],
    ),
    DemoProduct(
        "kestrel",
        "keyward",
        "Keyward",
        "Security",
        "An SSH certificate authority for fleets of servers.",
        ("ssh", "certificates"),
        state="draft",
    ),
    DemoProduct(
        "bluefin",
        "edgegate",
        "EdgeGate",
        "Networking",
        "An edge router for IoT sites.",
        ("router", "iot"),
        state="resubmitted",
    ),
    DemoProduct(
        "harbourline",
        "tidewatch",
        "Tidewatch",
        "Monitoring",
        "Uptime checks for web services.",
        ("uptime", "http"),
        state="withdrawn",
    ),
]

CUSTOMERS = ("alice", "bob", "carol")
