"""Imports every domain's models so the metadata (and Alembic) sees all tables."""

from dockyard import jobs as job_models
from dockyard.accounts import models as accounts_models
from dockyard.alerts import models as alerts_models
from dockyard.audit import models as audit_models
from dockyard.compliance import models as compliance_models
from dockyard.db import Base
from dockyard.email import models as email_models
from dockyard.entitlements import models as entitlements_models
from dockyard.publishing import models as publishing_models
from dockyard.registry import models as registry_models
from dockyard.scanning import models as scanning_models
from dockyard.store import models as store_models
from dockyard.webhooks import models as webhooks_models

metadata = Base.metadata

__all__ = [
    "accounts_models",
    "alerts_models",
    "audit_models",
    "compliance_models",
    "email_models",
    "entitlements_models",
    "job_models",
    "metadata",
    "publishing_models",
    "registry_models",
    "scanning_models",
    "store_models",
    "webhooks_models",
]
