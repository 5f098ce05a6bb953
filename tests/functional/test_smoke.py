from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import RegistryClient


def test_push_and_pull_round_trip(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    reg = RegistryClient(client, user, PASSWORD)
    digest = reg.push_image(f"{user}/app", "v1", [b"one", b"two"])
    r = reg.get_manifest(f"{user}/app", "v1")
    assert r.status_code == 200
    assert r.headers["docker-content-digest"] == digest
    layer = r.json()["layers"][1]["digest"]
    assert reg.pull_blob(f"{user}/app", layer).content == b"two"
