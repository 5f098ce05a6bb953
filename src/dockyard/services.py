"""The services factory: every domain service on one session, built on first use.

Requests (``ctx.services``), jobs (``JobContext.services``) and CLI commands (``runtime.unit_of_work()``)
get their services here and nowhere else, so each is built with the same bus, blob store and settings.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from dockyard.accounts.reads import AccountReads
    from dockyard.accounts.selfservice import SelfService
    from dockyard.accounts.services import AccountService
    from dockyard.alerts.services import AlertService
    from dockyard.compliance.fastpath import FastPath
    from dockyard.compliance.services import ComplianceService
    from dockyard.compliance.vex import VexService
    from dockyard.entitlements.services import EntitlementService
    from dockyard.moderation.services import ReviewService
    from dockyard.publishing.profiles import PublisherService
    from dockyard.publishing.services import ProductService
    from dockyard.registry.browse import RegistryBrowser
    from dockyard.registry.services import RegistryService
    from dockyard.runtime import Runtime
    from dockyard.scanning.services import ScanService
    from dockyard.store.badges import BadgeService
    from dockyard.store.listings import ListingService
    from dockyard.store.reads import StoreReads
    from dockyard.store.search import SearchService
    from dockyard.webhooks.services import WebhookService


class Services:
    def __init__(self, session: Session, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime

    @cached_property
    def accounts(self) -> AccountService:
        from dockyard.accounts.services import AccountService

        return AccountService(self.session, self.runtime.bus, self.runtime.verified_passwords)

    @cached_property
    def selfservice(self) -> SelfService:
        from dockyard.accounts.selfservice import SelfService

        rt = self.runtime
        return SelfService(self.session, rt.bus, self.accounts, signup_open=rt.settings.signup_open)

    @cached_property
    def account_reads(self) -> AccountReads:
        from dockyard.accounts.reads import AccountReads

        return AccountReads(self.session)

    @cached_property
    def registry(self) -> RegistryService:
        from dockyard.registry.services import RegistryService

        rt = self.runtime
        registry = RegistryService(self.session, rt.blobs, rt.bus, rt.settings, rt.pull_recorder)
        # Store paths (store/<publisher>/<product>/<image>) are granted by the entitlements' rules.
        registry.store_grant = lambda principal, *parts: self.entitlements.pull_grant(principal, *parts)
        return registry

    @cached_property
    def browser(self) -> RegistryBrowser:
        """The registry browser's read views (its pages), deciding access as the registry does."""
        from dockyard.registry.browse import RegistryBrowser

        return RegistryBrowser(self.registry, self.accounts)

    @cached_property
    def scans(self) -> ScanService:
        from dockyard.scanning.services import ScanService

        rt = self.runtime
        return ScanService(self.session, rt.blobs, rt.bus, rt.settings)

    @cached_property
    def reviews(self) -> ReviewService:
        """The review back and forth: revision moves, the thread, the queue, publishing (pins)."""
        from dockyard.moderation.services import ReviewService

        return ReviewService(self.session, self.runtime.bus, self.runtime.settings, self)

    @cached_property
    def publishers(self) -> PublisherService:
        """Publisher profiles and their catalogue images (logos, screenshots)."""
        from dockyard.publishing.assets import AssetStore
        from dockyard.publishing.profiles import PublisherService

        return PublisherService(self.session, self.runtime.bus, self.accounts, AssetStore(self.runtime.blobs))

    @cached_property
    def products(self) -> ProductService:
        """Publishers' products and their working revisions (drafts)."""
        from dockyard.publishing.services import ProductService

        return ProductService(self.session, self.runtime.bus, self.accounts)

    @cached_property
    def listings(self) -> ListingService:
        """The store's listings, kept from live revisions (search and the store pages read them)."""
        from dockyard.store.listings import ListingService

        return ListingService(self.session, self.runtime.blobs)

    @cached_property
    def entitlements(self) -> EntitlementService:
        """Customers' entitlements to products' tiers, and who may pull a store path."""
        from dockyard.entitlements.services import EntitlementService

        return EntitlementService(self.session, self.runtime.bus, self.accounts, self.runtime.store_cache)

    @cached_property
    def search(self) -> SearchService:
        """Full-text search of the store's listings, with filters and facet counts."""
        from dockyard.store.search import SearchService

        return SearchService(self.session)

    @cached_property
    def store_reads(self) -> StoreReads:
        """What the store's customer pages and the product details API read (listings, a live manifest)."""
        from dockyard.store.reads import StoreReads

        return StoreReads(self.session)

    @cached_property
    def badges(self) -> BadgeService:
        """Store badges, granted and withdrawn by store-admins (audited; the listing's certified follows)."""
        from dockyard.store.badges import BadgeService

        return BadgeService(self.session, self.runtime.bus, self.runtime.blobs)

    @cached_property
    def compliance(self) -> ComplianceService:
        """Fix-time clocks, notices, hold, lift and revocation, extensions and VEX statements."""
        from dockyard.compliance.services import ComplianceService

        return ComplianceService(self.session, self.runtime.bus, self.runtime.settings, self)

    @cached_property
    def fast_path(self) -> FastPath:
        """Approves and publishes digest-only fix revisions (DOCKYARD_AUTO_APPROVE_FIXES)."""
        from dockyard.compliance.fastpath import FastPath

        return FastPath(self.session, self.runtime.bus, self.runtime.settings, self)

    @cached_property
    def vex(self) -> VexService:
        """Publishers' VEX statements on findings, decided by the store team."""
        from dockyard.compliance.vex import VexService

        return VexService(self.session, self.runtime.bus, self.runtime.settings, self)

    @cached_property
    def webhooks(self) -> WebhookService:
        """Publishers' and customers' webhook endpoints, and ``emit`` (queues an event's deliveries)."""
        from dockyard.webhooks.services import WebhookService
        from dockyard.webhooks.signing import secret_box

        rt = self.runtime
        box = secret_box(rt.settings.data_dir / "keys")
        return WebhookService(self.session, rt.bus, rt.settings, self.accounts, box)

    @cached_property
    def alerts(self) -> AlertService:
        """Notification preferences, repository watches and the mail of new findings to watchers."""
        from dockyard.alerts.services import AlertService

        return AlertService(self.session, self.runtime.bus, self.runtime.settings, self)
