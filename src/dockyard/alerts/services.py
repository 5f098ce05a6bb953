"""Notification preferences, repository watches and the loop that tells watchers of new findings.

``run(now)`` is what the periodic job (and the job queued when a scan or a feed re-match commits) runs: for
every watch whose user may still read the repository's scan results, it records each finding of the images
the repository's tags point to that was first seen or reopened since the watch's cursor, then mails the
Critical ones at once and the rest in the user's daily digest (at most one a day, every watch together).
Everything is decided from stored times, so a late or repeated run mails what one on time would have, once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.accounts.authentication import staff_roles_of
from dockyard.accounts.models import User
from dockyard.alerts.findings import finding_details, occurrences
from dockyard.alerts.models import AlertItem, AlertPreference, RepositoryWatch, Via
from dockyard.authz import ALL_SCOPES, Permission, Principal, allowed, require
from dockyard.config import Settings
from dockyard.db import MAX_ID, utcnow
from dockyard.entitlements.models import Entitlement
from dockyard.errors import Forbidden, NotFound
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.oci.reference import namespace_of
from dockyard.registry.models import Repository

if TYPE_CHECKING:
    from dockyard.entitlements.services import EntitlementInfo
    from dockyard.services import Services

CRITICAL = "Critical"
# A scan stamps its findings before its transaction commits: each run looks this far behind the cursor
# again (the items already recorded are skipped), so a finding committed late is never missed.
OVERLAP = dt.timedelta(hours=1)
DIGEST_EVERY = dt.timedelta(hours=24)
MAX_EVENT_ITEMS = 100  # an event (its audit row, its mail) carries at most this many findings
SCAN_PAGE = "/ui/repositories/{name}/-/scans/{digest}"


@dataclass(frozen=True)
class Preferences:
    critical_now: bool = True
    daily_digest: bool = True
    digest_sent_at: dt.datetime | None = None


@dataclass(frozen=True)
class WatchView:
    repository: str
    since: dt.datetime
    noticed_until: dt.datetime
    readable: bool  # False: the user lost access, nothing is told until it comes back
    told: int  # findings mailed so far


@dataclass
class RunReport:
    watches: int = 0
    skipped: int = 0  # watches of repositories their users may no longer read
    found: int = 0
    mails: int = 0
    digests: int = 0
    users: list[int] = field(default_factory=list)


class AlertService:
    def __init__(self, session: Session, bus: EventBus, settings: Settings, services: Services) -> None:
        self.session = session
        self.bus = bus
        self.settings = settings
        self.services = services

    # -- preferences ---------------------------------------------------------------------------------------
    def preferences(self, principal: Principal) -> Preferences:
        """The caller's mail preferences (the defaults when never saved)."""
        user = self._user(principal)
        return _view(self.session.get(AlertPreference, user.id))

    def set_preferences(
        self,
        principal: Principal,
        actor: Actor,
        *,
        critical_now: bool | None = None,
        daily_digest: bool | None = None,
    ) -> Preferences:
        """Change the caller's mail preferences (fields left None stay); audited when anything changed."""
        user = self._user(principal)
        row = self._preference_row(user.id)
        changed: dict[str, bool] = {}
        for name, value in (("critical_now", critical_now), ("daily_digest", daily_digest)):
            if value is not None and getattr(row, name) != value:
                setattr(row, name, value)
                changed[name] = value
        if changed:
            row.updated_at = utcnow()
            self.session.flush()
            self.bus.publish(
                self.session,
                Event(EventTag.ALERT_PREFERENCES, actor, namespace=user.username, data=changed),
            )
        return _view(row)

    def security_mail(self, principal: Principal) -> list[EntitlementInfo]:
        """The caller's active entitlements, each with whether its product's security mail is on."""
        self._user(principal)
        return self.services.entitlements.list_for(principal, include_ended=False)

    def set_security_mail(
        self, principal: Principal, entitlement_id: int, on: bool, actor: Actor
    ) -> Entitlement:
        """Turn the security mail about one of the caller's entitlements' products on or off (audited)."""
        user = self._user(principal)
        row = self.session.get(Entitlement, entitlement_id) if 1 <= entitlement_id <= MAX_ID else None
        if row is None or row.user_id != user.id:
            raise NotFound("no such entitlement")
        if row.notify_security != on:
            row.notify_security = on
            self.session.flush()
            info = self.services.entitlements.info(row)
            self.bus.publish(
                self.session,
                Event(
                    EventTag.ENTITLEMENT_NOTIFY,
                    actor,
                    namespace=info.publisher,
                    data={"entitlement": row.id, "product": info.product, "notify_security": on},
                ),
            )
        return row

    # -- watches -------------------------------------------------------------------------------------------
    def watches(self, principal: Principal) -> list[WatchView]:
        """The caller's watched repositories, by name."""
        user = self._user(principal)
        told = (
            select(func.count(AlertItem.id))
            .where(
                AlertItem.watch_id == RepositoryWatch.id,
                AlertItem.mailed_at.is_not(None),
                AlertItem.via.in_((Via.EMAIL.value, Via.DIGEST.value)),
            )
            .scalar_subquery()
        )
        rows = self.session.execute(
            select(RepositoryWatch, Repository, told)
            .join(Repository, Repository.id == RepositoryWatch.repository_id)
            .where(RepositoryWatch.user_id == user.id)
            .order_by(Repository.name)
        ).all()
        who = self._everything(principal)
        return [
            WatchView(repo.name, w.created_at, w.noticed_until, self._readable(who, repo), int(n or 0))
            for w, repo, n in rows
        ]

    def watch_state(self, principal: Principal, name: str) -> bool | None:
        """Whether the caller watches ``name``; None when it may not (anonymous, a robot, no scan access)."""
        if principal.kind != "user" or principal.user_id is None:
            return None
        repo = self.services.registry.find_repository(name)
        if repo is None or not self._readable(self._everything(principal), repo):
            return None
        return self._watch_row(principal.user_id, repo.id) is not None

    def watch(self, principal: Principal, name: str, actor: Actor) -> tuple[WatchView, bool]:
        """Subscribe the caller to new-vulnerability notices of ``name`` (idempotent): the watch, and
        whether it is new. A repository the caller may not read is "not known", as a missing one."""
        user = self._user(principal)
        repo = self._visible(principal, name)
        row = self._watch_row(user.id, repo.id)
        created = row is None
        if row is None:
            now = utcnow()
            row = RepositoryWatch(user_id=user.id, repository_id=repo.id, created_at=now, noticed_until=now)
            self.session.add(row)
            self.session.flush()
            self._audit(EventTag.REPOSITORY_WATCH, actor, repo.name, user.username)
        return WatchView(repo.name, row.created_at, row.noticed_until, True, 0), created

    def unwatch(self, principal: Principal, name: str, actor: Actor) -> bool:
        """Stop the caller's watch of ``name`` (idempotent): whether there was one. A repository the caller
        lost access to can still be unwatched; one it never could is "not known"."""
        user = self._user(principal)
        repo = self.services.registry.find_repository(name)
        row = self._watch_row(user.id, repo.id) if repo is not None else None
        if repo is None or (row is None and not self._readable(self._everything(principal), repo)):
            raise NotFound(f"repository {name!r} not known")
        if row is None:
            return False
        self.session.delete(row)
        self.session.flush()
        self._audit(EventTag.REPOSITORY_UNWATCH, actor, repo.name, user.username)
        return True

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self, now: dt.datetime | None = None) -> RunReport:
        """Record every watch's new findings, mail the Critical ones at once and the digests that are due."""
        now = now or utcnow()
        report = RunReport()
        rows = self.session.execute(
            select(RepositoryWatch, Repository, User)
            .join(Repository, Repository.id == RepositoryWatch.repository_id)
            .join(User, User.id == RepositoryWatch.user_id)
            .order_by(RepositoryWatch.id)
        ).all()
        prefs = self._preferences_of({user.id for _, _, user in rows})
        principals: dict[int, Principal] = {}
        for watch, repo, user in rows:
            report.watches += 1
            who = principals.setdefault(user.id, self._principal_of(user))
            cursor = max(watch.noticed_until, now)
            if not user.is_active or not self._readable(who, repo):
                # Never told what they may not read; nor, should access come back, what happened meanwhile.
                watch.noticed_until = cursor
                report.skipped += 1
                continue
            since = max(watch.created_at, watch.noticed_until - OVERLAP)
            if since < now:
                report.found += self._record(watch, repo.id, since, now, prefs.get(user.id, Preferences()))
            watch.noticed_until = cursor
        self.session.flush()
        report.mails = self._mail_critical(now, principals)
        report.digests = self._mail_digests(now, principals, prefs)
        return report

    def _record(
        self,
        watch: RepositoryWatch,
        repository_id: int,
        since: dt.datetime,
        now: dt.datetime,
        pref: Preferences,
    ) -> int:
        known = {
            (f, _naive(s))
            for f, s in self.session.execute(
                select(AlertItem.finding_id, AlertItem.seen_at).where(
                    AlertItem.watch_id == watch.id, AlertItem.seen_at > since
                )
            )
        }
        added = 0
        for occ in occurrences(self.session, repository_id, since, now):
            if (occ.finding_id, _naive(occ.seen_at)) in known:
                continue
            if occ.severity == CRITICAL and pref.critical_now:
                via = Via.EMAIL
            else:
                via = Via.DIGEST if pref.daily_digest else Via.OFF
            self.session.add(
                AlertItem(
                    watch_id=watch.id,
                    finding_id=occ.finding_id,
                    seen_at=occ.seen_at,
                    tags=", ".join(occ.tags)[:512],
                    digest=occ.digest,
                    image_digest=occ.image_digest,
                    severity=occ.severity,
                    via=via.value,
                    queued_at=now,
                    mailed_at=now if via == Via.OFF else None,
                )
            )
            added += 1
        return added

    def _mail_critical(self, now: dt.datetime, principals: dict[int, Principal]) -> int:
        """Items to mail at once, one mail per user."""
        by_user = self._pending(Via.EMAIL)
        mails = 0
        for user_id, items in by_user.items():
            mails += self._tell(user_id, items, "email", now, principals)
        return mails

    def _mail_digests(
        self, now: dt.datetime, principals: dict[int, Principal], prefs: dict[int, Preferences]
    ) -> int:
        """Each user's digest, when one is waiting and the last went out a day ago or more."""
        sent = 0
        for user_id, items in self._pending(Via.DIGEST).items():
            pref = prefs.get(user_id, Preferences())
            if not pref.daily_digest:  # turned off since they were queued
                for item, _repo in items:
                    item.via, item.mailed_at = Via.OFF.value, now
                continue
            if pref.digest_sent_at is not None and now - pref.digest_sent_at < DIGEST_EVERY:
                continue
            if self._tell(user_id, items, "digest", now, principals):
                self._preference_row(user_id).digest_sent_at = now
                sent += 1
        return sent

    def _pending(self, via: Via) -> dict[int, list[tuple[AlertItem, Repository]]]:
        rows = self.session.execute(
            select(AlertItem, RepositoryWatch.user_id, Repository)
            .join(RepositoryWatch, RepositoryWatch.id == AlertItem.watch_id)
            .join(Repository, Repository.id == RepositoryWatch.repository_id)
            .where(AlertItem.mailed_at.is_(None), AlertItem.via == via.value)
            .order_by(RepositoryWatch.user_id, Repository.name, AlertItem.id)
        ).all()
        found: dict[int, list[tuple[AlertItem, Repository]]] = {}
        for item, user_id, repo in rows:
            found.setdefault(user_id, []).append((item, repo))
        return found

    def _tell(
        self,
        user_id: int,
        items: list[tuple[AlertItem, Repository]],
        via: str,
        now: dt.datetime,
        principals: dict[int, Principal],
    ) -> int:
        """Publish one notice of the items still worth telling (open, readable); 1 when one was published."""
        user = self.session.get(User, user_id)
        assert user is not None
        who = principals.setdefault(user_id, self._principal_of(user))
        details = finding_details(self.session, [item.finding_id for item, _ in items])
        told: list[dict[str, Any]] = []
        readable: dict[int, bool] = {}
        for item, repo in items:
            detail = details.get(item.finding_id)
            if repo.id not in readable:
                readable[repo.id] = user.is_active and self._readable(who, repo)
            if detail is None or detail["resolved"] or not readable[repo.id]:
                item.via, item.mailed_at = Via.DROPPED.value, now
                continue
            item.mailed_at = now
            told.append(
                {
                    "repository": repo.name,
                    "tags": item.tags,
                    "digest": item.digest,
                    "image_digest": item.image_digest,
                    "vulnerability": detail["vulnerability"],
                    "severity": detail["severity"],
                    "component": detail["component"],
                    "version": detail["version"],
                    "fixed_version": detail["fixed_version"],
                    "summary": detail["summary"],
                    "reopened": detail["reopened_at"] is not None,
                    "scan": SCAN_PAGE.format(name=repo.name, digest=item.image_digest),
                }
            )
        self.session.flush()
        if not told:
            return 0
        data = {
            "user": user.username,
            "user_id": user.id,
            "via": via,
            "count": len(told),
            "items": told[:MAX_EVENT_ITEMS],
        }
        self.bus.publish(
            self.session, Event(EventTag.ALERT_NOTICE, Actor.system(), namespace=user.username, data=data)
        )
        return 1

    # -- helpers -------------------------------------------------------------------------------------------
    def _user(self, principal: Principal) -> User:
        """The signed-in user acting for themself (robots have no mail)."""
        require(principal, Permission.ACCOUNT_MANAGE)
        user = self.session.get(User, principal.user_id) if principal.user_id is not None else None
        if principal.kind != "user" or user is None:
            raise Forbidden("only a user account has notifications")
        return user

    @staticmethod
    def _everything(principal: Principal) -> Principal:
        """What the user may do, whatever the credential in use may (watching is about the account)."""
        return replace(principal, scopes=ALL_SCOPES)

    def _principal_of(self, user: User) -> Principal:
        return Principal(
            kind="user", name=user.username, user_id=user.id, staff=staff_roles_of(self.session, user.id)
        )

    def _readable(self, principal: Principal, repo: Repository) -> bool:
        """Whether the user may pull the repository and read its scan results (findings are never told to
        anyone else)."""
        role = self.services.accounts.role_in(principal, namespace_of(repo.name))
        return allowed(principal, Permission.SCAN_READ, namespace_role=role) and allowed(
            principal, Permission.REPOSITORY_PULL, namespace_role=role, public=repo.is_public
        )

    def _visible(self, principal: Principal, name: str) -> Repository:
        repo = self.services.registry.find_repository(name) if name else None
        if repo is None or not self._readable(self._everything(principal), repo):
            raise NotFound(f"repository {name!r} not known")
        return repo

    def _watch_row(self, user_id: int, repository_id: int) -> RepositoryWatch | None:
        return self.session.scalar(
            select(RepositoryWatch).where(
                RepositoryWatch.user_id == user_id, RepositoryWatch.repository_id == repository_id
            )
        )

    def _preference_row(self, user_id: int) -> AlertPreference:
        row = self.session.get(AlertPreference, user_id)
        if row is None:
            row = AlertPreference(user_id=user_id, critical_now=True, daily_digest=True, updated_at=utcnow())
            self.session.add(row)
            self.session.flush()
        return row

    def _preferences_of(self, user_ids: set[int]) -> dict[int, Preferences]:
        if not user_ids:
            return {}
        rows = self.session.scalars(
            select(AlertPreference).where(AlertPreference.user_id.in_(sorted(user_ids)))
        )
        return {row.user_id: _view(row) for row in rows}

    def _audit(self, tag: EventTag, actor: Actor, repository: str, username: str) -> None:
        event = Event(
            tag, actor, namespace=namespace_of(repository), repository=repository, data={"user": username}
        )
        self.bus.publish(self.session, event)


def _view(row: AlertPreference | None) -> Preferences:
    if row is None:
        return Preferences()
    return Preferences(row.critical_now, row.daily_digest, row.digest_sent_at)


def _naive(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=None)
