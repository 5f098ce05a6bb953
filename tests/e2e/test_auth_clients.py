"""Access control as real clients meet it: anonymous and wrong-password attempts, logins, robot accounts,
members and outsiders of an organisation, and a repository made public with the CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from tests.e2e.clients import Clients, require_tools

require_tools("skopeo", "podman", "umoci")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def acme(server, images, tmp_path_factory):
    """Organisation ``acme`` (owner alice, reader carol; bob is no member) with a private image."""
    alice, bob, carol = server.user("alice"), server.user("bob"), server.user("carol")
    server.org("acme", alice, carol="reader")
    image = images.image("auth-private")
    clients = Clients(tmp_path_factory.mktemp("auth-setup"))
    try:
        clients.copy(image.oci, server.ref("acme/private:v1"), dest_creds=alice.creds)
    finally:
        clients.close()
    return SimpleNamespace(alice=alice, bob=bob, carol=carol, image=image)


AUTH_WORDS = ("unauthorized", "denied", "authentication required")


def refused(result, *words: str) -> str:
    """Assert a client command failed, saying one of ``words`` (by default: that access was refused)."""
    assert result.returncode != 0, result.stdout
    message = result.stderr.lower()
    assert any(word in message for word in words or AUTH_WORDS), result.stderr
    return message


def without_timestamps(message: str) -> str:
    return re.sub(r'time="[^"]*"', "", message)


def auth_entries(clients: Clients) -> dict:
    return json.loads(clients.auth_file.read_text()).get("auths", {})


def test_anonymous_cannot_pull_a_private_repository(server, acme, clients, oci_dir):
    refused(clients.inspect(server.ref("acme/private:v1"), None, check=False))
    copy = clients.copy(server.ref("acme/private:v1"), f"oci:{oci_dir('anon')}:v1", check=False)
    refused(copy)
    pull = clients.podman("pull", "--tls-verify=false", f"{server.host}/acme/private:v1", check=False)
    refused(pull)


def test_wrong_password_fails_login_and_the_right_one_succeeds(server, acme, clients):
    alice = acme.alice
    bad = clients.skopeo(
        "login", "--tls-verify=false", "-u", "alice", "-p", "not-her-password", server.host, check=False
    )
    refused(bad, "invalid username")
    bad = clients.podman(
        "login", "--tls-verify=false", "-u", "alice", "-p", "not-her-password", server.host, check=False
    )
    refused(bad, "invalid username")
    assert server.host not in auth_entries(clients)
    assert len(server.audit("user:login_failed")) >= 2

    ok = clients.podman("login", "--tls-verify=false", "-u", "alice", "-p", alice.password, server.host)
    assert "Login Succeeded" in ok.stdout
    assert server.host in auth_entries(clients)
    # skopeo uses what podman stored (REGISTRY_AUTH_FILE): no --creds needed.
    info = clients.skopeo("inspect", "--tls-verify=false", server.ref("acme/private:v1"))
    assert json.loads(info.stdout)["Digest"] == acme.image.digest
    clients.podman("logout", server.host)
    assert server.host not in auth_entries(clients)

    ok = clients.skopeo("login", "--tls-verify=false", "-u", "alice", "-p", alice.password, server.host)
    assert "Login Succeeded" in ok.stdout
    assert server.host in auth_entries(clients)
    # A personal access token works as the password too.
    clients.skopeo("login", "--tls-verify=false", "-u", "alice", "-p", alice.token, server.host)


def test_robot_reader_pulls_but_cannot_push(server, acme, clients, images, oci_dir):
    robot = server.robot("acme", "puller", "reader")
    assert robot.username == "acme+puller"
    out = oci_dir("robot-pull")
    clients.copy(server.ref("acme/private:v1"), f"oci:{out}:v1", src_creds=robot.creds)
    pull = clients.podman(
        "pull", "--tls-verify=false", "--creds", robot.creds, f"{server.host}/acme/private:v1"
    )
    assert "sha256:" + pull.stdout.strip().splitlines()[-1] == acme.image.config_digest

    other = images.image("auth-robot-push")
    push = clients.copy(other.oci, server.ref("acme/from-reader:v1"), dest_creds=robot.creds, check=False)
    refused(push)
    refused(clients.inspect(server.ref("acme/from-reader:v1"), acme.alice.creds, check=False), "name unknown")


def test_robot_maintainer_pushes(server, acme, clients, images):
    robot = server.robot("acme", "builder", "maintainer")
    image = images.image("auth-robot-maintainer")
    clients.copy(image.oci, server.ref("acme/built:v1"), dest_creds=robot.creds)
    assert clients.inspect_json(server.ref("acme/built:v1"), acme.alice.creds)["Digest"] == image.digest
    pushes = server.audit("manifest:push", "acme/built")
    assert [(e.actor_name, e.actor_kind) for e in pushes] == [("acme+builder", "robot")]
    # A robot of acme has no business outside it.
    elsewhere = clients.copy(
        image.oci, server.ref("alice/robot-was-here:v1"), dest_creds=robot.creds, check=False
    )
    refused(elsewhere)


def test_members_and_outsiders(server, acme, clients, images, oci_dir):
    carol, bob = acme.carol, acme.bob
    # A reader member pulls, but may not push.
    assert clients.inspect_json(server.ref("acme/private:v1"), carol.creds)["Digest"] == acme.image.digest
    other = images.image("auth-reader-push")
    refused(clients.copy(other.oci, server.ref("acme/by-carol:v1"), dest_creds=carol.creds, check=False))

    # An outsider is refused, with the very error a repository that does not exist gives.
    private = clients.inspect(server.ref("acme/private:v1"), bob.creds, check=False)
    missing = clients.inspect(server.ref("acme/no-such-repo:v1"), bob.creds, check=False)
    refused(private)
    refused(missing)
    private_error = without_timestamps(private.stderr).replace("acme/private", "NAME")
    assert private_error == without_timestamps(missing.stderr).replace("acme/no-such-repo", "NAME")
    copy = clients.copy(
        server.ref("acme/private:v1"), f"oci:{oci_dir('bob')}:v1", src_creds=bob.creds, check=False
    )
    refused(copy)
    podman = clients.podman(
        "pull", "--tls-verify=false", "--creds", bob.creds, f"{server.host}/acme/private:v1", check=False
    )
    refused(podman)


def test_public_repository_pulls_anonymously(server, acme, clients, images, oci_dir):
    image = images.image("auth-public")
    ref = server.ref("acme/opensource:v1")
    clients.copy(image.oci, ref, dest_creds=acme.alice.creds)
    refused(clients.inspect(ref, None, check=False))

    server.set_public("acme/opensource")
    assert clients.inspect_json(ref, None)["Digest"] == image.digest
    out = oci_dir("public")
    clients.copy(ref, f"oci:{out}:v1")  # no credentials at all
    pull = clients.podman("pull", "--tls-verify=false", f"{server.host}/acme/opensource:v1")
    assert "sha256:" + pull.stdout.strip().splitlines()[-1] == image.config_digest
    # Public means anyone may pull, not push, and outsiders may pull too.
    assert clients.inspect_json(ref, acme.bob.creds)["Digest"] == image.digest
    other = images.image("auth-public-push")
    refused(clients.copy(other.oci, server.ref("acme/opensource:v2"), check=False))
    refused(clients.copy(other.oci, server.ref("acme/opensource:v2"), dest_creds=acme.bob.creds, check=False))

    server.set_public("acme/opensource", False)
    refused(clients.inspect(ref, None, check=False))


def curl_v2(server, path: str, creds: str | None, method: str = "GET") -> tuple[int, dict, dict[str, str]]:
    """``curl -u USER:SECRET`` on a /v2 path: (status, JSON body, lower-cased headers)."""
    cmd = ["curl", "-sS", "--noproxy", "*", "-X", method, "-D", "-", f"{server.url}{path}"]
    out = subprocess.run(
        [*cmd, *(["-u", creds] if creds else [])], capture_output=True, text=True, check=True
    )
    head, _, body = out.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    headers = dict((k.lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
    return int(lines[0].split()[1]), json.loads(body or "{}"), headers


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_with_basic_credentials_on_v2(server, acme):
    """What Distribution with htpasswd and Harbor allow: credentials on the /v2 request itself."""
    path = "/v2/acme/private/tags/list"
    robot = server.robot("acme", "curl", "reader")
    for creds in (acme.alice.password_creds, acme.alice.creds, acme.carol.password_creds, robot.creds):
        status, body, _ = curl_v2(server, path, creds)
        assert (status, body) == (200, {"name": "acme/private", "tags": ["v1"]}), creds.split(":")[0]
    # A second login with the same password is the cached one: the same answer.
    assert curl_v2(server, path, acme.alice.password_creds)[0] == 200
    for creds in (acme.bob.password_creds, "alice:not-her-password", None):
        status, body, headers = curl_v2(server, path, creds)
        assert status == 401 and body["errors"][0]["code"] == "UNAUTHORIZED"
        assert headers["www-authenticate"].startswith(f'Bearer realm="{server.url}/token"')
    # Pushing takes push rights: a reader's Basic credentials are refused as its token would be.
    status, _, headers = curl_v2(server, "/v2/acme/private/blobs/uploads/", acme.carol.password_creds, "POST")
    assert status == 401 and 'error="insufficient_scope"' in headers["www-authenticate"]
    status, _, headers = curl_v2(server, "/v2/acme/private/blobs/uploads/", acme.alice.creds, "POST")
    assert status == 202 and headers["location"].startswith("/v2/acme/private/blobs/uploads/")
