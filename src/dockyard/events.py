"""Typed event tags and a tiny publish/subscribe bus.

Every event is written as an audit row in the caller's transaction; subscribers that talk to the outside
world (email, jobs) are run only after that transaction commits.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

log = logging.getLogger("dockyard.events")


class EventTag(StrEnum):
    USER_LOGIN = "user:login"
    USER_LOGIN_FAILED = "user:login_failed"
    USER_CREATE = "user:create"
    USER_TOKEN_CREATE = "user:token_create"
    USER_TOKEN_REVOKE = "user:token_revoke"
    USER_PASSWORD_CHANGE = "user:password_change"
    USER_SIGN_OUT_EVERYWHERE = "user:sign_out_everywhere"
    USER_LOGOUT = "user:logout"
    USER_EMAIL_VERIFY_REQUEST = "user:email_verify_request"  # a confirmation link mailed to an address
    USER_EMAIL_VERIFY = "user:email_verify"  # an address confirmed (and made the account's)
    USER_EMAIL_CHANGE_REQUEST = "user:email_change_request"  # a new address asked for, not confirmed yet
    USER_PASSWORD_RESET_REQUEST = "user:password_reset_request"  # a reset link mailed
    STAFF_GRANT = "staff:grant"
    STAFF_REVOKE = "staff:revoke"
    ORG_CREATE = "org:create"
    ORG_MEMBER_SET = "org:member_set"
    ORG_MEMBER_REMOVE = "org:member_remove"
    ROBOT_CREATE = "robot:create"
    ROBOT_DELETE = "robot:delete"
    REPOSITORY_CREATE = "repository:create"
    REPOSITORY_VISIBILITY = "repository:visibility"
    MANIFEST_PUSH = "manifest:push"
    MANIFEST_PULL = "manifest:pull"
    MANIFEST_DELETE = "manifest:delete"
    TAG_DELETE = "tag:delete"
    BLOB_PUSH = "blob:push"
    BLOB_MOUNT = "blob:mount"
    BLOB_DELETE = "blob:delete"
    GC_RUN = "gc:run"
    SCAN_COMPLETE = "scan:complete"
    SCAN_REMATCH = "scan:rematch"
    FINDING_RECLASSIFY = "finding:reclassify"
    VULNDB_UPDATE = "vulndb:update"
    PUBLISHER_UPDATE = "publisher:update"  # the profile saved (data: the fields changed)
    PUBLISHER_EMAIL_VERIFY_REQUEST = "publisher:email_verify_request"  # a link mailed to the company address
    PUBLISHER_EMAIL_VERIFY = "publisher:email_verify"
    PUBLISHER_AGREEMENT_ACCEPT = "publisher:agreement_accept"  # data: the agreement's version
    CATALOG_IMAGE_UPLOAD = "catalog_image:upload"  # a logo or screenshot checked and stored
    PRODUCT_CREATE = "product:create"
    PRODUCT_UPDATE = "product:update"  # the working revision's manifest saved
    # A revision moved from one state to another (data: from, to, comment, revision, product); one tag each,
    # so that notifications subscribe to the moves they mail about.
    REVISION_SUBMIT = "revision:submit"
    REVISION_CLAIM = "revision:claim"
    REVISION_REQUEST_CHANGES = "revision:request_changes"
    REVISION_RESUBMIT = "revision:resubmit"
    REVISION_APPROVE = "revision:approve"
    REVISION_REJECT = "revision:reject"
    REVISION_WITHDRAW = "revision:withdraw"
    PRODUCT_PUBLISH = "product:publish"
    PRODUCT_UNPUBLISH = "product:unpublish"
    REVIEW_COMMENT = "review:comment"  # data: internal, anchor; never the body of an internal note
    REVIEW_COMMENT_RESOLVE = "review:comment_resolve"  # a thread marked resolved (data: comment, internal)
    # A customer got a tier (data: product, tier, licence link accepted, reactivated), cancelled it, or the
    # store team or the publisher revoked it (data: reason).
    ENTITLEMENT_CREATE = "entitlement:create"
    ENTITLEMENT_CANCEL = "entitlement:cancel"
    ENTITLEMENT_REVOKE = "entitlement:revoke"
    BADGE_GRANT = "badge:grant"  # a store badge granted or re-granted (data: product, kind, reason)
    BADGE_WITHDRAW = "badge:withdraw"  # a store badge withdrawn (data: product, kind, reason)
    # The compliance loop (data: product, product_id, publisher_id and the clocks concerned): fix-time clocks
    # opened, resolved or restarted; notices sent (starting clocks); a due time extended; a listing held,
    # its hold lifted (also: a revoked one back by a new revision), revoked; VEX statements filed and decided;
    # a fix revision approved and published by the fast path.
    COMPLIANCE_FINDINGS = "compliance:findings"
    COMPLIANCE_NOTICE = "compliance:notice"
    COMPLIANCE_EXTEND = "compliance:extend"
    PRODUCT_HOLD = "product:hold"
    PRODUCT_HOLD_LIFT = "product:hold_lift"
    PRODUCT_REVOKE = "product:revoke"
    VEX_SUBMIT = "vex:submit"
    VEX_ACCEPT = "vex:accept"
    VEX_REJECT = "vex:reject"
    REVISION_AUTO_APPROVE = "revision:auto_approve"
    # Webhook endpoints (issue 11; data: id, owner, url, kinds, what changed; never the secret), a redelivery
    # asked for by hand, and an endpoint turned off by dockyard after too many failed deliveries.
    WEBHOOK_CREATE = "webhook:create"
    WEBHOOK_UPDATE = "webhook:update"  # data: the fields changed; secret_rotated when the secret was
    WEBHOOK_DELETE = "webhook:delete"
    WEBHOOK_REDELIVER = "webhook:redeliver"  # data: endpoint, delivery, event_id
    WEBHOOK_DISABLE = "webhook:disable"  # by the system (data: endpoint, failures)
    # Notifications (issue 11): a user's mail preferences changed (data: the fields and their new values), the
    # security mail of one of their entitlements switched (data: entitlement, product, notify_security), a
    # repository watched or unwatched, and new findings told to a watcher (data: user, via, the findings).
    ALERT_PREFERENCES = "alert:preferences"
    ENTITLEMENT_NOTIFY = "entitlement:notify"
    REPOSITORY_WATCH = "repository:watch"
    REPOSITORY_UNWATCH = "repository:unwatch"
    ALERT_NOTICE = "alert:notice"


@dataclass(frozen=True)
class Actor:
    """Who is acting and from where: carried from the edge into services."""

    user_id: int | None = None
    name: str = "anonymous"
    ip: str | None = None
    user_agent: str | None = None
    kind: str = "anonymous"  # anonymous | user | robot | token | system

    @classmethod
    def system(cls) -> Actor:
        return cls(name="system", kind="system")


@dataclass
class Event:
    tag: EventTag
    actor: Actor
    namespace: str | None = None
    repository: str | None = None
    digest: str | None = None
    reference: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # For in-transaction subscribers only, never written to the audit log: the one-time secret of a link
    # that a subscriber mails, which the audit trail must not hold.
    private: dict[str, Any] = field(default_factory=dict, repr=False)


Handler = Callable[[Session, Event], None]
AfterCommit = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._in_tx: dict[EventTag, list[Handler]] = defaultdict(list)
        self._after: dict[EventTag, list[AfterCommit]] = defaultdict(list)

    def subscribe(self, tag: EventTag, handler: Handler) -> None:
        """Run ``handler`` inside the publishing transaction."""
        self._in_tx[tag].append(handler)

    def after_commit(self, tag: EventTag, handler: AfterCommit) -> None:
        """Run ``handler`` once the publishing transaction has committed."""
        self._after[tag].append(handler)

    def publish(self, session: Session, event: Event) -> None:
        from dockyard.audit.models import AuditEvent

        # A Core insert on the session's connection, not session.add: every push records an event, and
        # the unit-of-work machinery costs more than the insert itself.
        session.connection().execute(AuditEvent.insert_statement(), AuditEvent.row_from_event(event))
        for handler in self._in_tx.get(event.tag, ()):
            handler(session, event)
        if self._after.get(event.tag):
            session.info.setdefault("after_commit", []).append(event)

    def run_after_commit(self, events: list[Event]) -> None:
        """Run the after-commit handlers of committed events. One that fails is logged, never raised: what
        it follows has committed and must not be reported as failed (nor undone), and the other handlers
        still run. The same for requests, jobs and CLI commands, which all end here."""
        for event in events:
            for handler in self._after.get(event.tag, ()):
                try:
                    handler(event)
                except Exception:
                    log.exception("after-commit handler %r failed on %s", handler, event.tag.value)
