"""Password hashing (argon2id) and generated-secret hashing."""

from __future__ import annotations

from dockyard.accounts.passwords import hash_password, hash_secret, new_secret, verify_password, verify_secret


def test_hash_password_is_argon2id_and_salted() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second  # a fresh salt every time
    assert verify_password(first, "correct horse")
    assert verify_password(second, "correct horse")


def test_verify_password_rejects_wrong_passwords_and_garbage_hashes() -> None:
    stored = hash_password("correct horse")
    assert not verify_password(stored, "wrong horse")
    assert not verify_password(stored, "")
    assert not verify_password("not-a-hash", "correct horse")
    assert not verify_password("", "correct horse")


def test_generated_secrets() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(s) >= 32 for s in secrets)  # 24 random bytes, url-safe base64


def test_secret_hash_round_trip() -> None:
    secret = new_secret()
    stored = hash_secret(secret)
    assert secret not in stored
    assert verify_secret(stored, secret)
    assert not verify_secret(stored, secret + "x")
    assert not verify_secret(stored, "")
