"""Docker registry token authentication: scope parsing, signed JWTs, and verification."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.authz import Principal
from dockyard.config import Settings
from dockyard.errors import Invalid, Unauthenticated

ALGORITHM = "ES256"


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    def to_claim(self, granted: set[str]) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(granted)}


def parse_scopes(values: list[str]) -> list[Scope]:
    """Parse ``scope`` parameters (``repository:org/name:pull,push``; several may share one value)."""
    scopes: list[Scope] = []
    for value in values:
        for item in value.split():
            parts = item.split(":")
            if len(parts) < 3:
                raise Invalid(f"invalid scope {item!r}", code="invalid_scope")
            type_, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            # "repository(plugin)" is an old Docker resource class; the class does not change access.
            type_ = type_.split("(", 1)[0]
            scopes.append(Scope(type_, name, frozenset(a for a in actions.split(",") if a)))
    return scopes


def _key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    # libtrust-style key id: base32 of the first 30 bytes of the DER key's SHA-256, grouped by 4.
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


@dataclass
class TokenSigner:
    private_key: ec.EllipticCurvePrivateKey
    issuer: str
    service: str
    ttl: int
    kid: str = field(init=False)
    _verified: dict[str, dict[str, Any]] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.kid = _key_id(self.private_key.public_key())
        self._public_key = self.private_key.public_key()

    @classmethod
    def from_dir(cls, key_dir: Path, *, issuer: str, service: str, ttl: int) -> TokenSigner:
        """Load the signing key from ``key_dir``, creating it on first start."""
        from dockyard.storage.permissions import create_once

        def generate() -> bytes:
            return ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )

        # Created once even when worker processes start together (they must all sign with one key).
        pem = create_once(key_dir / "token-signing-key.pem", generate)
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(key, issuer, service, ttl)

    def issue(
        self,
        subject: str,
        access: list[dict[str, Any]],
        *,
        claims: dict[str, Any] | None = None,
        ttl: int | None = None,
    ) -> str:
        """Sign a registry token for ``subject`` carrying ``access``."""
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + (ttl or self.ttl),
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
            **(claims or {}),
        }
        return jwt.encode(payload, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def verify(self, token: str, *, typ: str | None = None) -> dict[str, Any]:
        """Check signature, audience, issuer, expiry and kind (``typ``; None: access); return the claims."""
        cached = self._verified.get(token)
        if cached is not None and cached["exp"] > time.time() and cached.get("typ") == typ:
            return cached
        claims = self._verify(token, typ)
        if len(self._verified) >= 4096:
            # Clients reuse a token for every request of a pull: remembering verified tokens saves an
            # ECDSA verification per request. Dropping the whole map when full keeps this trivially bounded.
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _verify(self, token: str, typ: str | None) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],
                audience=self.service,
                issuer=self.issuer,
                leeway=5,
                # A token without an expiry would be good forever; without iat, aud or iss, for anything.
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        # A 30-day refresh token is only good for the token endpoint, never as a bearer token.
        if claims.get("typ") != typ:
            raise Unauthenticated("invalid token: wrong kind of token")
        return claims


def bearer_challenge(settings: Settings, scope: str | None = None, error: str | None = None) -> str:
    """The WWW-Authenticate value that sends docker clients to the token endpoint."""
    value = f'Bearer realm="{settings.public_url}/token",service="{settings.service_name}"'
    if scope:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return value


def granted_actions(claims: dict[str, Any], type_: str, name: str) -> set[str]:
    """The actions a verified token grants on one resource."""
    actions: set[str] = set()
    for entry in claims.get("access") or ():
        if entry.get("type") == type_ and entry.get("name") == name:
            actions.update(entry.get("actions") or ())
    return actions


def principal_claims(principal: Principal) -> dict[str, Any]:
    """The claims that name a token's principal (``principal_from_claims`` reads them back)."""
    return {
        "dockyard": {
            "kind": principal.kind,
            "uid": principal.user_id,
            "rid": principal.robot_id,
        }
    }


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Who a verified registry token was issued to."""
    d = claims.get("dockyard") or {}
    return Principal(
        kind=d.get("kind", "anonymous"),
        name=claims.get("sub") or "anonymous",
        user_id=d.get("uid"),
        robot_id=d.get("rid"),
        via="bearer",
    )
