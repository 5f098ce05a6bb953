"""The verified-password cache on its own: keyed hashes, expiry, bounds, and what an entry is bound to."""

from __future__ import annotations

import pickle

from dockyard.accounts.credential_cache import VerifiedPasswords


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def remember(cache: VerifiedPasswords, username: str = "alice", password: str = "pw-1", **row) -> None:
    fields = {"user_id": 7, "generation": 0, "password_hash": "$argon2id$stored", **row}
    cache.remember(username, password, **fields)


def test_only_the_same_name_and_password_are_recalled() -> None:
    cache = VerifiedPasswords()
    remember(cache)
    entry = cache.recall("alice", "pw-1")
    assert entry is not None and entry.user_id == 7
    assert cache.recall("alice", "pw-2") is None
    assert cache.recall("bob", "pw-1") is None
    assert cache.recall("alice", "pw-1 ") is None
    # Length-prefixed parts: moving the boundary between name and password is another key.
    remember(cache, "ab", "c")
    assert cache.recall("a", "bc") is None


def test_entries_hold_no_secret_and_mean_nothing_to_another_process() -> None:
    cache = VerifiedPasswords()
    remember(cache, "alice", "a very recognisable password", password_hash="$argon2id$the-stored-hash")
    held = pickle.dumps(list(cache._entries.items()))
    assert b"recognisable" not in held and b"alice" not in held
    assert b"the-stored-hash" not in held  # only a SHA-256 of it
    # Each cache has its own random key: the same credential is another key elsewhere.
    other = VerifiedPasswords()
    assert other._slot("alice", "a very recognisable password") not in cache._entries


def test_an_entry_expires_after_the_ttl_counted_from_its_check() -> None:
    clock = Clock()
    cache = VerifiedPasswords(ttl=60, clock=clock)
    remember(cache)
    clock.now += 59
    assert cache.recall("alice", "pw-1") is not None  # a use does not extend it
    clock.now += 1
    assert cache.recall("alice", "pw-1") is None
    assert len(cache) == 0


def test_expired_entries_are_dropped_by_any_call() -> None:
    clock = Clock()
    cache = VerifiedPasswords(ttl=60, clock=clock)
    for i in range(10):
        remember(cache, f"user{i}")
    clock.now += 61
    remember(cache, "late")
    assert len(cache) == 1
    clock.now += 61
    assert cache.recall("someone", "else") is None
    assert len(cache) == 0


def test_the_cache_is_bounded_and_drops_the_oldest_check_first() -> None:
    clock = Clock()
    cache = VerifiedPasswords(max_entries=3, clock=clock)
    for name in ("a", "b", "c"):
        remember(cache, name)
        clock.now += 1
    remember(cache, "a")  # checked again: now the newest
    remember(cache, "d")
    assert len(cache) == 3
    assert cache.recall("b", "pw-1") is None
    assert all(cache.recall(n, "pw-1") is not None for n in ("a", "c", "d"))


def test_forget_and_a_zero_ttl() -> None:
    cache = VerifiedPasswords()
    remember(cache)
    cache.forget("alice", "pw-1")
    assert cache.recall("alice", "pw-1") is None
    off = VerifiedPasswords(ttl=0)
    remember(off)
    assert off.recall("alice", "pw-1") is None and len(off) == 0


def test_an_entry_holds_only_for_the_row_it_was_checked_against() -> None:
    cache = VerifiedPasswords()
    remember(cache, user_id=7, generation=3, password_hash="$argon2id$one")
    entry = cache.recall("alice", "pw-1")
    assert entry is not None
    assert entry.still_holds(7, 3, "$argon2id$one", True)
    assert not entry.still_holds(7, 3, "$argon2id$one", False)  # deactivated
    assert not entry.still_holds(7, 4, "$argon2id$one", True)  # password changed, signed out everywhere
    assert not entry.still_holds(7, 3, "$argon2id$two", True)  # a new hash, however it was written
    assert not entry.still_holds(8, 3, "$argon2id$one", True)  # another user under the same name
