"""Authentication, part of AccountService: logins (throttled), personal access tokens and robot secrets as
credentials, refresh tokens bound to the credential that minted them, and server-side browser sessions.

A login is three steps, so the slow one holds no write lock: ``reserve_attempt`` (counts the attempt),
``verify_credentials`` (reads; argon2), ``record_login`` (writes the audit row and the throttle's count).
A password this process verified moments ago skips the first two (``recall_password``: the throttle is
checked, the user row re-read, no argon2; see credential_cache.py).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from dockyard.accounts.credential_cache import VerifiedPasswords
from dockyard.accounts.models import AccessToken, BrowserSession, Namespace, Robot, StaffGrant, User
from dockyard.accounts.passwords import hash_password, hash_secret, new_secret, verify_password, verify_secret
from dockyard.accounts.throttle import LoginThrottle
from dockyard.authz import REGISTRY_SCOPES, Principal, StaffRole, parse_scopes
from dockyard.db import utcnow
from dockyard.errors import EmailUnverified, LoginFailed, Unauthenticated
from dockyard.events import Actor, Event, EventBus, EventTag

ROBOT_SEPARATOR = "+"
TOKEN_PREFIX = "dyt_"
SESSION_TTL = dt.timedelta(hours=12)


def staff_roles_of(session: Session, user_id: int) -> frozenset[StaffRole]:
    """The store-team roles a user holds (unknown values, from a newer version, are ignored)."""
    values = session.scalars(select(StaffGrant.role).where(StaffGrant.user_id == user_id))
    return frozenset(StaffRole(v) for v in values if v in StaffRole.__members__.values())


@functools.cache
def _timing_dummy_hash() -> str:
    return hash_password("no user has this password")


def is_throttled_kind(username: str, secret: str) -> bool:
    """Passwords are throttled; robot secrets and access tokens (128+ random bits, a fast hash) are not,
    so that guessing a user's password cannot lock out their CI's tokens and robots."""
    return ROBOT_SEPARATOR not in username and not secret.startswith(TOKEN_PREFIX)


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 19 else None


class Authentication:
    session: Session
    bus: EventBus
    # This process's passwords verified moments ago (None: every password is checked with argon2).
    verified: VerifiedPasswords | None = None

    # -- logins ----------------------------------------------------------------------------------
    def authenticate(self, username: str, secret: str, *, actor: Actor | None = None) -> Principal:
        """Check a password, a personal access token or a robot secret; records the login either way."""
        ip = actor.ip if actor else None
        reservation = None
        found = self.recall_password(username, secret, ip)
        if found is None:
            reservation = self.reserve_attempt(username, ip) if is_throttled_kind(username, secret) else None
            found = self.verify_credentials(username, secret)
        return self.record_login(username, found, actor=actor, reservation=reservation)

    def recall_password(self, username: str, secret: str, ip: str | None) -> Principal | None:
        """The user, when this process verified exactly this password for them moments ago and their row
        read now is still the one checked then (same id, credential generation and password hash; active):
        no argon2. None when the password must be checked in full. Raises TooManyRequests while the
        throttle refuses the account or the address: a remembered password waits like any other."""
        if self.verified is None or not is_throttled_kind(username, secret):
            return None
        remembered = self.verified.recall(username, secret)
        if remembered is None:
            return None
        LoginThrottle(self.session).check(username, ip)
        user = self.session.scalar(select(User).where(User.username == username))
        if user is None or not remembered.still_holds(
            user.id, user.credential_generation or 0, user.password_hash, user.is_active
        ):
            self.verified.forget(username, secret)
            return None
        return self._user_principal(user, via="password")

    def reserve_attempt(self, username: str, ip: str | None) -> int:
        """Count a password attempt before it is checked (TooManyRequests past a limit; see throttle.py).
        Run and committed in a short write transaction of its own, so parallel guesses cannot all pass
        the check before any of them is counted."""
        return LoginThrottle(self.session).reserve(username, ip)

    def verify_credentials(self, username: str, secret: str) -> Principal | None:
        """The principal these credentials prove, or None. Reads only: the slow argon2 check can run
        outside the request's write transaction."""
        return self._check_credentials(username, secret)

    def record_login(
        self,
        username: str,
        principal: Principal | None,
        *,
        actor: Actor | None = None,
        reservation: int | None = None,
    ) -> Principal:
        """Record a login (or a failed one, then raise LoginFailed)."""
        base = actor or Actor()
        throttle = LoginThrottle(self.session)
        if principal is None:
            # The attempt was counted before it was checked (reserve_attempt): now it counts as failed.
            if reservation is not None:
                throttle.settle(reservation)
            self.bus.publish(
                self.session,
                Event(
                    EventTag.USER_LOGIN_FAILED,
                    Actor(None, username[:64], base.ip, base.user_agent, "anonymous"),
                ),
            )
            raise LoginFailed("invalid username or password")
        throttle.succeeded(username, base.ip)
        if principal.via == "password" and not self._email_confirmed(principal):
            # The right password, but the address given at sign-up is unconfirmed: no session, no registry
            # token, no API call until the link mailed there is opened (see selfservice.py).
            self.bus.publish(
                self.session,
                Event(
                    EventTag.USER_LOGIN_FAILED,
                    Actor(principal.user_id, principal.name, base.ip, base.user_agent, "user"),
                    data={"reason": "email unverified"},
                ),
            )
            raise EmailUnverified(
                "confirm your email address first: open the link we mailed to you, or ask for a new one"
            )
        if principal.token_id is not None:
            self.session.execute(
                update(AccessToken).where(AccessToken.id == principal.token_id).values(last_used_at=utcnow())
            )
        elif principal.robot_id is not None:
            self.session.execute(
                update(Robot).where(Robot.id == principal.robot_id).values(last_used_at=utcnow())
            )
        self.bus.publish(
            self.session,
            Event(
                EventTag.USER_LOGIN,
                Actor(principal.user_id, principal.name, base.ip, base.user_agent, principal.kind),
                data={"via": principal.via},
            ),
        )
        return principal

    def _email_confirmed(self, principal: Principal) -> bool:
        if principal.kind != "user" or principal.user_id is None:
            return True
        user = self.session.get(User, principal.user_id)
        return user is None or user.email_verified_at is not None

    def _check_credentials(self, username: str, secret: str) -> Principal | None:
        if ROBOT_SEPARATOR in username:
            org, _, name = username.partition(ROBOT_SEPARATOR)
            robot = self.session.scalar(
                select(Robot)
                .join(Namespace, Namespace.id == Robot.namespace_id)
                .where(Namespace.name == org, Robot.name == name)
            )
            if robot is None or not verify_secret(robot.secret_hash, secret):
                return None
            return self._robot_principal(robot, username, via="robot")
        if secret.startswith(TOKEN_PREFIX):
            # An access token is checked as one and only one (no password starts with the prefix): a
            # fast hash, the same work whether or not the name exists, and no throttle to lock it out.
            token = self._live_token(secret)
            user = self.session.get(User, token.user_id) if token is not None else None
            if user is None or not user.is_active or user.username != username or token is None:
                return None
            return self._token_principal(user, token)
        user = self.session.scalar(select(User).where(User.username == username))
        if user is None or not user.is_active:
            # Spend the same argon2 time as a real check, so response times do not tell which names exist.
            verify_password(_timing_dummy_hash(), secret)
            return None
        if verify_password(user.password_hash, secret):
            if self.verified is not None:
                self.verified.remember(
                    username,
                    secret,
                    user_id=user.id,
                    generation=user.credential_generation or 0,
                    password_hash=user.password_hash,
                )
            return self._user_principal(user, via="password")
        return None

    def token_principal(self, secret: str) -> Principal | None:
        """The principal of a personal access token given on its own (``Authorization: Bearer dyt_...``)."""
        token = self._live_token(secret) if secret.startswith(TOKEN_PREFIX) else None
        if token is None:
            return None
        user = self.session.get(User, token.user_id)
        if user is None or not user.is_active:
            return None
        return self._token_principal(user, token)

    def _live_token(self, secret: str) -> AccessToken | None:
        lookup, _, raw = secret[len(TOKEN_PREFIX) :].partition("_")
        token = self.session.scalar(select(AccessToken).where(AccessToken.lookup == lookup[:32]))
        if (
            token is not None
            and not token.revoked
            and (token.expires_at is None or token.expires_at > utcnow())
            and verify_secret(token.secret_hash, raw)
        ):
            return token
        return None

    def _user_principal(self, user: User, *, via: str) -> Principal:
        return Principal(
            kind="user",
            name=user.username,
            user_id=user.id,
            staff=staff_roles_of(self.session, user.id),
            via=via,
            generation=user.credential_generation or 0,
        )

    def _token_principal(self, user: User, token: AccessToken) -> Principal:
        return Principal(
            kind="user",
            name=user.username,
            user_id=user.id,
            staff=staff_roles_of(self.session, user.id),
            via="token",
            token_id=token.id,
            scopes=parse_scopes(token.scopes),
            generation=user.credential_generation or 0,
        )

    @staticmethod
    def _robot_principal(robot: Robot, name: str, *, via: str) -> Principal:
        # A robot pulls (and pushes, as a maintainer); it never manages the account.
        return Principal(kind="robot", name=name, robot_id=robot.id, via=via, scopes=REGISTRY_SCOPES)

    # -- refresh tokens --------------------------------------------------------------------------
    @staticmethod
    def refresh_claims(principal: Principal) -> dict[str, Any]:
        """What a refresh token must carry to be checked again later: the credential that minted it and,
        for users, the credential generation it was minted in."""
        if principal.kind == "robot":
            credential = f"robot:{principal.robot_id}"
        elif principal.token_id is not None:
            credential = f"token:{principal.token_id}"
        else:
            credential = "password"
        return {"cred": credential, "gen": principal.generation}

    def principal_for_refresh(self, subject: str, claims: dict[str, Any]) -> Principal:
        """Re-derive a principal from a refresh token: refused once the credential that minted it is gone
        (token revoked or expired, robot deleted) or the user's credential generation has moved on
        (password changed, signed out everywhere)."""
        credential = str(claims.get("cred") or "")
        kind, _, ident = credential.partition(":")
        if claims.get("kind") == "robot":
            robot = self.session.get(Robot, _int(ident)) if kind == "robot" else None
            if robot is None or robot.id != claims.get("rid"):
                raise Unauthenticated("robot account no longer exists")
            ns = self.session.get(Namespace, robot.namespace_id)
            if ns is None or f"{ns.name}{ROBOT_SEPARATOR}{robot.name}" != subject:
                raise Unauthenticated("robot account no longer exists")
            return self._robot_principal(robot, subject, via="refresh")
        user = self.session.scalar(select(User).where(User.username == subject))
        if user is None or not user.is_active:
            raise Unauthenticated("account no longer active")
        if claims.get("gen") != (user.credential_generation or 0):
            raise Unauthenticated("this refresh token was revoked: log in again")
        if kind == "token":
            token = self.session.get(AccessToken, _int(ident))
            if (
                token is None
                or token.user_id != user.id
                or token.revoked
                or (token.expires_at is not None and token.expires_at <= utcnow())
            ):
                raise Unauthenticated("the access token this refresh token came from is revoked")
            principal = self._token_principal(user, token)
        elif kind == "password":
            principal = self._user_principal(user, via="password")
        else:
            raise Unauthenticated("this refresh token was revoked: log in again")
        return Principal(**{**principal.__dict__, "via": "refresh"})

    # -- browser sessions ------------------------------------------------------------------------
    def start_session(self, principal: Principal, *, actor: Actor | None = None) -> str:
        """A new browser session for a user who has just logged in; returns the cookie's secret."""
        user = self.session.get(User, principal.user_id)
        if user is None or principal.kind != "user":
            raise Unauthenticated("only users sign in to the pages")
        secret = new_secret(32)
        now = utcnow()
        self.session.execute(delete(BrowserSession).where(BrowserSession.expires_at <= now))
        self.session.add(
            BrowserSession(
                id=hash_secret(secret),
                user_id=user.id,
                generation=user.credential_generation or 0,
                created_at=now,
                expires_at=now + SESSION_TTL,
                ip=(actor.ip if actor else None),
                user_agent=((actor.user_agent or "")[:512] or None) if actor else None,
            )
        )
        self.session.flush()
        return secret

    def session_principal(self, secret: str) -> Principal:
        """The user of a live browser session (Unauthenticated once it has ended)."""
        row = self.session.get(BrowserSession, hash_secret(secret)) if secret else None
        if row is None or row.expires_at <= utcnow():
            raise Unauthenticated("login required")
        user = self.session.get(User, row.user_id)
        if user is None or not user.is_active or row.generation != (user.credential_generation or 0):
            raise Unauthenticated("login required")
        return self._user_principal(user, via="session")

    def end_session(self, secret: str) -> None:
        """Log a browser out: its cookie stops working everywhere at once."""
        if secret:
            self.session.execute(delete(BrowserSession).where(BrowserSession.id == hash_secret(secret)))
