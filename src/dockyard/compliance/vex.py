"""VEX statements: a publisher says a finding does not affect its product (``not_affected``, with one of
OpenVEX's justifications) or is fixed in it; the store team accepts or rejects it with a reason (audited).
An accepted statement resolves the matching clocks at once (and lifts a hold they caused); the accepted
ones are the product's OpenVEX document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.authz import Permission, Principal, allowed
from dockyard.compliance.models import (
    FindingClock,
    VexDecision,
    VexJustification,
    VexStatement,
    VexStatus,
)
from dockyard.config import Settings
from dockyard.db import MAX_ID, utcnow
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.publishing.models import Product

if TYPE_CHECKING:
    from dockyard.services import Services

IMPACT_MAX = 4000
OPENVEX_CONTEXT = "https://openvex.dev/ns/v0.2.0"


def _field(name: str, message: str) -> Invalid:
    return Invalid(f"{name}: {message}", detail=[{"field": name, "message": message}])


class VexService:
    def __init__(self, session: Session, bus: EventBus, settings: Settings, services: Services) -> None:
        self.session = session
        self.bus = bus
        self.settings = settings
        self.services = services

    def submit(
        self,
        org: str,
        slug: str,
        principal: Principal,
        actor: Actor,
        *,
        vulnerability: str,
        status: str,
        justification: str | None = None,
        impact_statement: str = "",
        component: str | None = None,
    ) -> VexStatement:
        """File a statement on an open finding of the product (its owners and maintainers)."""
        ctx = self.services.reviews.product_context(org, slug, principal)
        if Permission.PRODUCT_EDIT not in ctx.granted:
            raise Forbidden("only the publisher's owners and maintainers file VEX statements")
        if status not in set(VexStatus):
            raise _field("status", f"one of {', '.join(VexStatus)}")
        if status == VexStatus.NOT_AFFECTED:
            if justification not in set(VexJustification):
                raise _field("justification", f"not_affected needs one of {', '.join(VexJustification)}")
        else:
            justification = None
        impact = (impact_statement or "").strip()
        if len(impact) > IMPACT_MAX or "\x00" in impact:
            raise _field("impact_statement", f"at most {IMPACT_MAX} characters")
        if status == VexStatus.NOT_AFFECTED and not impact:
            raise _field("impact_statement", "say why the product is not affected")
        component = (component or "").strip() or None
        open_clock = select(FindingClock.id).where(
            FindingClock.product_id == ctx.product.id,
            FindingClock.vuln_id == vulnerability,
            FindingClock.resolved_at.is_(None),
        )
        if component is not None:
            open_clock = open_clock.where(FindingClock.component == component)
        if self.session.scalar(open_clock.limit(1)) is None:
            raise _field("vulnerability", "no open finding of this product matches it")
        pending = select(VexStatement.id).where(
            VexStatement.product_id == ctx.product.id,
            VexStatement.vuln_id == vulnerability,
            VexStatement.decision == VexDecision.PENDING.value,
        )
        if self.session.scalar(pending.limit(1)) is not None:
            raise Conflict(f"a statement on {vulnerability} is waiting for the store team already")
        row = VexStatement(
            product_id=ctx.product.id,
            vuln_id=vulnerability,
            component=component,
            status=status,
            justification=justification,
            impact_statement=impact,
            submitted_by=principal.name,
            submitted_at=utcnow(),
        )
        self.session.add(row)
        self.session.flush()
        self._publish(EventTag.VEX_SUBMIT, ctx.product, org, actor, row)
        return row

    def decide(
        self, vex_id: int, accept: bool, reason: str, principal: Principal, actor: Actor
    ) -> VexStatement:
        """Accept (resolving the matching clocks) or reject a pending statement, with a reason."""
        if not allowed(principal, Permission.COMPLIANCE_MANAGE):
            raise Forbidden("only the store team decides VEX statements")
        row = self.session.get(VexStatement, vex_id) if 1 <= vex_id <= MAX_ID else None
        if row is None:
            raise NotFound(f"VEX statement {vex_id} not found")
        if row.decision != VexDecision.PENDING:
            raise Conflict(f"this statement was {row.decision} already")
        reason = (reason or "").strip()
        if not reason or len(reason) > IMPACT_MAX or "\x00" in reason:
            raise _field("reason", "say why (at most 4000 characters)")
        row.decision = (VexDecision.ACCEPTED if accept else VexDecision.REJECTED).value
        row.decided_by, row.decided_at, row.decision_reason = principal.name, utcnow(), reason
        self.session.flush()
        product = self.session.get(Product, row.product_id)
        assert product is not None
        org = self.services.compliance.org_of(product)
        self._publish(EventTag.VEX_ACCEPT if accept else EventTag.VEX_REJECT, product, org, actor, row)
        if accept:
            now = utcnow()
            self.services.compliance.sync_product(product, now)
            self.services.compliance.transitions(now)
        return row

    def statements(self, product_id: int) -> list[VexStatement]:
        return list(
            self.session.scalars(
                select(VexStatement)
                .where(VexStatement.product_id == product_id)
                .order_by(VexStatement.submitted_at.desc(), VexStatement.id.desc())
            )
        )

    def openvex(self, org: str, slug: str, principal: Principal) -> dict[str, Any]:
        """The product's accepted statements as an OpenVEX document."""
        ctx = self.services.reviews.product_context(org, slug, principal)
        accepted = [s for s in self.statements(ctx.product.id) if s.decision == VexDecision.ACCEPTED]
        product_id = f"{self.settings.registry_host}/store/{org}/{slug}"
        statements = []
        for s in accepted:
            entry: dict[str, Any] = {
                "vulnerability": {"name": s.vuln_id},
                "products": [
                    {"@id": product_id, **({"subcomponents": [{"@id": s.component}]} if s.component else {})}
                ],
                "status": s.status,
                "timestamp": (s.decided_at or s.submitted_at).isoformat() + "Z",
            }
            if s.justification:
                entry["justification"] = s.justification
            if s.impact_statement:
                entry["impact_statement"] = s.impact_statement
            statements.append(entry)
        latest = max((s.decided_at for s in accepted if s.decided_at), default=None)
        return {
            "@context": OPENVEX_CONTEXT,
            "@id": f"{self.settings.public_url}/api/v1/products/{org}/{slug}/vex",
            "author": f"{org} (accepted by the {self.settings.service_name} store team)",
            "timestamp": (latest or utcnow()).isoformat() + "Z",
            "version": len(accepted) or 1,
            "statements": statements,
        }

    def _publish(self, tag: EventTag, product: Product, org: str, actor: Actor, row: VexStatement) -> None:
        data = {
            "product": product.slug,
            "product_id": product.id,
            "publisher_id": product.publisher_id,
            "vex": row.id,
            "vulnerability": row.vuln_id,
            "component": row.component,
            "status": row.status,
            "justification": row.justification,
            "decision": row.decision,
            "reason": row.decision_reason,
        }
        self.bus.publish(self.session, Event(tag, actor, namespace=org, data=data))
