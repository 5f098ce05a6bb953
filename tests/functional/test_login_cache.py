"""Repeated logins with the same right password skip argon2 (accounts/credential_cache.py), at /token and
with Basic on /v2; and whatever ends a credential ends it at once, in this process and in another."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_org, make_robot, make_user
from tests.support.registry_client import assert_oci_error, protocol_guard, request_token

from dockyard.accounts import authentication
from dockyard.accounts.models import User
from dockyard.accounts.services import AccountService
from dockyard.accounts.throttle import DEFAULT_LIMITS, LoginThrottle
from dockyard.db import make_session_factory
from dockyard.events import EventBus
from dockyard.registry.auth import TokenSigner
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver
from dockyard.web.app import create_app
from dockyard.web.context import AppState


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


class Argon2Calls:
    """Counts password checks (argon2 runs), real and dummy (unknown names spend one too)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = authentication.verify_password

        def counting(stored: str, password: str) -> bool:
            self.count += 1
            return real(stored, password)

        monkeypatch.setattr(authentication, "verify_password", counting)

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.fixture
def argon2(monkeypatch) -> Argon2Calls:
    return Argon2Calls(monkeypatch)


@pytest.fixture
def alice(app_state) -> tuple[str, str]:
    with app_state.sessions.begin() as s:
        user = make_user(s).username
        make_org(s, name=f"{user}-org", owner=user)
    return user, PASSWORD


def token_status(client, who: tuple[str, str]) -> int:
    return request_token(client, [], *who).status_code


def v2_status(client, who: tuple[str, str]) -> int:
    return client.get(f"/v2/{who[0]}/app/tags/list", auth=who).status_code


@pytest.mark.parametrize("door", [token_status, v2_status], ids=["token", "v2-basic"])
def test_a_repeated_login_skips_argon2(client, alice, argon2, app_state, door):
    first = door(client, alice)
    assert first in (200, 404)  # /v2: the repository does not exist yet, the login was right
    assert argon2.taken() == 1
    for _ in range(3):
        assert door(client, alice) == first
    assert argon2.taken() == 0
    # The other door shares the cache (it is the process's, not the endpoint's).
    other = v2_status if door is token_status else token_status
    assert other(client, alice) in (200, 404)
    assert argon2.taken() == 0
    assert len(app_state.verified_passwords) == 1


def test_a_wrong_password_is_never_served_from_the_cache(client, alice, argon2, app_state):
    assert token_status(client, alice) == 200
    argon2.taken()
    for i in range(3):
        assert_oci_error(request_token(client, [], alice[0], f"wrong {i}"), 401, "UNAUTHORIZED")
        assert argon2.taken() == 1  # the full price, every time
    with app_state.sessions() as s:
        assert LoginThrottle(s).count(alice[0]) == 3  # and each counted
    assert len(app_state.verified_passwords) == 1


def test_a_remembered_password_waits_for_the_throttle_like_any_other(client, alice, argon2):
    assert token_status(client, alice) == 200
    for _ in range(DEFAULT_LIMITS.per_account_and_address):
        request_token(client, [], alice[0], "wrong password")
    argon2.taken()
    assert_oci_error(request_token(client, [], *alice), 429, "TOOMANYREQUESTS")
    assert_oci_error(client.get("/v2/", auth=alice), 429, "TOOMANYREQUESTS")
    assert argon2.taken() == 0


def test_unknown_names_and_wrong_passwords_pay_argon2_with_a_warm_cache(client, alice, argon2):
    assert token_status(client, alice) == 200
    argon2.taken()
    assert token_status(client, ("nobody-here", PASSWORD)) == 401
    assert argon2.taken() == 1  # the dummy hash: unknown names take as long as known ones
    assert token_status(client, (alice[0], PASSWORD + "x")) == 401
    assert argon2.taken() == 1


# -- whatever ends a credential ends its cached login at once ----------------------------------------------
def both_doors(client, who: tuple[str, str]) -> tuple[int, int]:
    return token_status(client, who), client.get("/v2/", auth=who).status_code


def test_a_password_change_refuses_the_old_password_at_once(client, alice, argon2, app_state):
    assert both_doors(client, alice) == (200, 200)
    with app_state.sessions.begin() as s:
        AccountService(s, EventBus()).set_password(alice[0], "new-password-2")
    assert both_doors(client, alice) == (401, 401)
    assert both_doors(client, (alice[0], "new-password-2")) == (200, 200)


def test_a_password_written_without_a_new_generation_still_refuses_the_old_one(client, alice, app_state):
    """E.g. a hash restored or set in the database by hand: the entry is bound to the hash itself too."""
    from dockyard.accounts.passwords import hash_password

    assert both_doors(client, alice) == (200, 200)
    with app_state.sessions.begin() as s:
        s.execute(
            update(User).where(User.username == alice[0]).values(password_hash=hash_password("other-pw-3"))
        )
    assert both_doors(client, alice) == (401, 401)


def test_sign_out_everywhere_makes_the_password_be_checked_again(client, alice, argon2):
    assert both_doors(client, alice) == (200, 200)
    argon2.taken()
    assert client.post("/api/v1/me/sign-out-everywhere", auth=alice).status_code == 204
    argon2.taken()
    # Still the user's password, but no login remembered from before counts: argon2 once more.
    assert both_doors(client, alice) == (200, 200)
    assert argon2.taken() == 1


def test_a_deactivated_user_is_refused_at_once(client, alice, app_state):
    assert both_doors(client, alice) == (200, 200)
    with app_state.sessions.begin() as s:
        s.scalar(select(User).where(User.username == alice[0])).is_active = False
    assert both_doors(client, alice) == (401, 401)


def test_a_revoked_token_is_refused_at_once(client, alice):
    created = client.post("/api/v1/tokens", json={"name": "ci"}, auth=alice).json()
    who = (alice[0], created["token"])
    assert both_doors(client, who) == (200, 200)
    assert client.delete(f"/api/v1/tokens/{created['id']}", auth=alice).status_code == 204
    assert both_doors(client, who) == (401, 401)


def test_a_deleted_robot_is_refused_at_once(client, alice, app_state):
    with app_state.sessions.begin() as s:
        robot, secret = make_robot(s, f"{alice[0]}-org", "ci")
    assert both_doors(client, (robot, secret)) == (200, 200)
    assert client.delete(f"/api/v1/orgs/{alice[0]}-org/robots/ci", auth=alice).status_code == 204
    assert both_doors(client, (robot, secret)) == (401, 401)


@pytest.fixture
def second_process(settings, app_state) -> Iterator[tuple[TestClient, AppState]]:
    """Another server process on the same database: its own runtime, so its own cache (and cache key)."""
    data = settings.data_dir
    state = AppState(
        settings=settings,
        engine=app_state.engine,
        sessions=make_session_factory(app_state.engine),
        blobs=BlobStore(LocalDriver(data / "storage"), data / "uploads"),
        bus=EventBus(),
        signer=TokenSigner.from_dir(data / "keys", issuer=settings.public_url, service="dockyard", ttl=300),
    )
    with TestClient(create_app(settings, state=state), base_url="http://127.0.0.1:5999") as other:
        yield other, state


def test_what_one_process_changes_another_refuses_at_once(client, alice, app_state, second_process):
    other, other_state = second_process
    assert both_doors(client, alice) == (200, 200)
    assert both_doors(other, alice) == (200, 200)
    assert len(app_state.verified_passwords) == len(other_state.verified_passwords) == 1
    # The other process changes the password (as `dockyard user passwd` would, through the service).
    with other_state.sessions.begin() as s:
        AccountService(s, other_state.bus, other_state.verified_passwords).set_password(
            alice[0], "new-password-4"
        )
    # This process still holds its entry for the old password, and refuses it: the row moved on.
    assert len(app_state.verified_passwords) == 1
    assert both_doors(client, alice) == (401, 401)
    assert both_doors(client, (alice[0], "new-password-4")) == (200, 200)
    # And the other way round: sign out everywhere here, the other process checks with argon2 again.
    assert both_doors(other, (alice[0], "new-password-4")) == (200, 200)
    assert client.post("/api/v1/me/sign-out-everywhere", auth=(alice[0], "new-password-4")).status_code == 204
    with other_state.sessions() as s:
        user = s.scalar(select(User).where(User.username == alice[0]))
        entry = other_state.verified_passwords.recall(alice[0], "new-password-4")
        assert entry is not None and not entry.still_holds(
            user.id, user.credential_generation, user.password_hash, user.is_active
        )
