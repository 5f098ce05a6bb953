"""Registry token auth: scope parsing, the token signer, challenges and granted actions."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.config import Settings
from dockyard.errors import Invalid, Unauthenticated
from dockyard.registry.auth import (
    ALGORITHM,
    Scope,
    TokenSigner,
    bearer_challenge,
    granted_actions,
    parse_scopes,
)


# -- scopes ---------------------------------------------------------------------------------------
def test_single_scope() -> None:
    assert parse_scopes(["repository:org/app:pull,push"]) == [
        Scope("repository", "org/app", frozenset({"pull", "push"}))
    ]


def test_no_scopes() -> None:
    assert parse_scopes([]) == []
    assert parse_scopes([""]) == []
    assert parse_scopes(["   "]) == []


def test_several_scope_parameters_and_several_scopes_in_one() -> None:
    scopes = parse_scopes(
        ["repository:a/one:pull repository:b/two:push", "  repository:c/three:pull,push,delete  "]
    )
    assert [(s.name, sorted(s.actions)) for s in scopes] == [
        ("a/one", ["pull"]),
        ("b/two", ["push"]),
        ("c/three", ["delete", "pull", "push"]),
    ]


def test_name_with_a_registry_port_keeps_its_colon() -> None:
    [scope] = parse_scopes(["repository:localhost:5000/org/app:pull"])
    assert (scope.type, scope.name, scope.actions) == ("repository", "localhost:5000/org/app", {"pull"})


def test_resource_class_is_ignored() -> None:
    [scope] = parse_scopes(["repository(plugin):org/plugin:pull"])
    assert (scope.type, scope.name) == ("repository", "org/plugin")


def test_catalog_and_wildcard_scopes() -> None:
    assert parse_scopes(["registry:catalog:*"]) == [Scope("registry", "catalog", frozenset({"*"}))]
    assert parse_scopes(["repository:org/app:*"])[0].actions == {"*"}


def test_odd_action_lists() -> None:
    assert parse_scopes(["repository:org/app:"])[0].actions == frozenset()
    assert parse_scopes(["repository:org/app:pull,,push,"])[0].actions == {"pull", "push"}
    assert parse_scopes(["repository:org/app:pull,pull"])[0].actions == {"pull"}


@pytest.mark.parametrize("value", ["repository", "repository:org/app", "pull", ":"])
def test_malformed_scopes(value: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_scopes([value])
    assert info.value.code == "invalid_scope"


def test_scope_claim() -> None:
    scope = Scope("repository", "org/app", frozenset({"pull", "push"}))
    assert scope.to_claim({"push", "pull"}) == {
        "type": "repository",
        "name": "org/app",
        "actions": ["pull", "push"],
    }
    assert scope.to_claim(set())["actions"] == []


# -- the signer -----------------------------------------------------------------------------------
@pytest.fixture
def signer(tmp_path: Path) -> TokenSigner:
    return TokenSigner.from_dir(tmp_path / "keys", issuer="http://reg.test", service="dockyard", ttl=300)


ACCESS = [{"type": "repository", "name": "org/app", "actions": ["pull"]}]


def test_issue_and_verify(signer: TokenSigner) -> None:
    token = signer.issue("alice", ACCESS, claims={"dockyard": {"kind": "user", "uid": 7}})
    claims = signer.verify(token)
    assert claims["sub"] == "alice"
    assert claims["iss"] == "http://reg.test"
    assert claims["aud"] == "dockyard"
    assert claims["access"] == ACCESS
    assert claims["dockyard"] == {"kind": "user", "uid": 7}
    assert claims["exp"] - claims["iat"] == 300
    assert jwt.get_unverified_header(token)["kid"] == signer.kid
    assert jwt.get_unverified_header(token)["alg"] == ALGORITHM == "ES256"


def test_every_token_has_its_own_id(signer: TokenSigner) -> None:
    ids = {signer.verify(signer.issue("alice", []))["jti"] for _ in range(5)}
    assert len(ids) == 5


def test_expired_token_is_rejected(signer: TokenSigner) -> None:
    token = signer.issue("alice", ACCESS, ttl=-60)  # expired a minute ago, past the 5 s leeway
    with pytest.raises(Unauthenticated, match="expired"):
        signer.verify(token)


def test_token_just_inside_the_leeway_is_accepted(signer: TokenSigner) -> None:
    token = signer.issue("alice", ACCESS, ttl=-2)
    assert signer.verify(token)["sub"] == "alice"


def test_wrong_audience_is_rejected(signer: TokenSigner) -> None:
    other = TokenSigner(signer.private_key, signer.issuer, "another-service", 300)
    with pytest.raises(Unauthenticated, match=r"(?i)audience"):
        other.verify(signer.issue("alice", ACCESS))


def test_wrong_issuer_is_rejected(signer: TokenSigner) -> None:
    other = TokenSigner(signer.private_key, "http://elsewhere", signer.service, 300)
    with pytest.raises(Unauthenticated, match="issuer"):
        other.verify(signer.issue("alice", ACCESS))


def test_token_signed_by_another_key_is_rejected(signer: TokenSigner, tmp_path: Path) -> None:
    stranger = TokenSigner(ec.generate_private_key(ec.SECP256R1()), signer.issuer, signer.service, 300)
    with pytest.raises(Unauthenticated):
        signer.verify(stranger.issue("alice", ACCESS))


def test_tampered_token_is_rejected(signer: TokenSigner) -> None:
    header, payload, signature = signer.issue("alice", ACCESS).split(".")
    forged = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"pull"', b'"push"')
    ).decode()
    with pytest.raises(Unauthenticated):
        signer.verify(f"{header}.{forged}.{signature}")


def test_unsigned_and_hmac_tokens_are_rejected(signer: TokenSigner) -> None:
    payload = {"sub": "alice", "aud": "dockyard", "iss": signer.issuer, "exp": int(time.time()) + 60}
    none_token = jwt.encode(payload, None, algorithm="none")
    hmac_token = jwt.encode(payload, "secret" * 6, algorithm="HS256")
    for token in (none_token, hmac_token, "", "garbage", "a.b.c"):
        with pytest.raises(Unauthenticated):
            signer.verify(token)


def test_key_is_persisted_across_from_dir_calls(tmp_path: Path) -> None:
    first = TokenSigner.from_dir(tmp_path / "keys", issuer="http://reg.test", service="dockyard", ttl=300)
    token = first.issue("alice", ACCESS)
    # A restart: the same directory, a new signer; tokens issued before still verify.
    second = TokenSigner.from_dir(tmp_path / "keys", issuer="http://reg.test", service="dockyard", ttl=300)
    assert second.kid == first.kid
    assert second.verify(token)["sub"] == "alice"
    key = tmp_path / "keys" / "token-signing-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["token-signing-key.pem"]


def test_a_new_key_directory_makes_a_new_key(tmp_path: Path) -> None:
    one = TokenSigner.from_dir(tmp_path / "a", issuer="i", service="s", ttl=300)
    two = TokenSigner.from_dir(tmp_path / "b", issuer="i", service="s", ttl=300)
    assert one.kid != two.kid
    with pytest.raises(Unauthenticated):
        two.verify(one.issue("alice", []))


def test_key_id_is_libtrust_style(signer: TokenSigner) -> None:
    groups = signer.kid.split(":")
    assert len(groups) == 12
    assert all(len(g) == 4 and g.isalnum() and g.upper() == g for g in groups)


# -- challenges and granted actions ---------------------------------------------------------------
def test_bearer_challenge(tmp_path: Path) -> None:
    settings = Settings(listen="127.0.0.1:5000", public_url="https://reg.example.com/", data_dir=tmp_path)
    assert bearer_challenge(settings) == 'Bearer realm="https://reg.example.com/token",service="dockyard"'
    assert bearer_challenge(settings, "repository:org/app:pull", "insufficient_scope") == (
        'Bearer realm="https://reg.example.com/token",service="dockyard",'
        'scope="repository:org/app:pull",error="insufficient_scope"'
    )


def test_granted_actions() -> None:
    claims = {
        "access": [
            {"type": "repository", "name": "org/app", "actions": ["pull"]},
            {"type": "repository", "name": "org/app", "actions": ["push"]},
            {"type": "repository", "name": "org/other", "actions": ["delete"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ]
    }
    assert granted_actions(claims, "repository", "org/app") == {"pull", "push"}
    assert granted_actions(claims, "repository", "org/other") == {"delete"}
    assert granted_actions(claims, "registry", "catalog") == {"*"}
    assert granted_actions(claims, "repository", "org/none") == set()
    assert granted_actions({}, "repository", "org/app") == set()
    assert granted_actions({"access": None}, "repository", "org/app") == set()
