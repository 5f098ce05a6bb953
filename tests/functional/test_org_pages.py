"""Organisation pages: my organisations and a new one; one organisation's members (owners add, change
roles, remove; an owner stays) and robot accounts (the secret shown once); readers see it read-only, and
anyone else gets exactly the page a missing organisation gets."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.support.accounts import browser, htmx_post, post, without_secrets
from tests.support.factories import PASSWORD, make_org, make_robot, make_user
from tests.support.pages import sign_in
from tests.support.registry_client import protocol_guard
from tests.support.scanimages import Images

from dockyard.accounts.models import Membership, Robot, User


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def team(app_state) -> dict[str, str]:
    """An organisation with an owner, a maintainer and a reader, and a user outside it."""
    with app_state.sessions.begin() as s:
        people = {role: make_user(s).username for role in ("owner", "maintainer", "reader", "outsider")}
        people["org"] = make_org(
            s, owner=people["owner"], members={people["maintainer"]: "maintainer", people["reader"]: "reader"}
        )
    return people


def members_of(state, org: str) -> dict[str, str]:
    from dockyard.accounts.models import Namespace

    with state.sessions() as s:
        rows = s.execute(
            select(User.username, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .join(Namespace, Namespace.id == Membership.namespace_id)
            .where(Namespace.name == org)
        )
        return dict(rows.all())


# -- the list ----------------------------------------------------------------------------------------------
def test_a_new_user_has_no_organisation_and_creates_one(client, app_state):
    with app_state.sessions.begin() as s:
        name = make_user(s).username
    sign_in(client, name, PASSWORD)
    r = client.get("/ui/orgs")
    assert r.status_code == 200 and "No organisations yet" in r.text
    r = post(client, "/ui/orgs", {"name": "acme-labs"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/orgs/acme-labs"
    assert "acme-labs is ready" in client.get("/ui/orgs/acme-labs").text
    r = client.get("/ui/orgs")
    assert 'href="/ui/orgs/acme-labs"' in r.text and '<span class="badge role">owner</span>' in r.text
    assert members_of(app_state, "acme-labs") == {name: "owner"}


def test_a_bad_or_taken_name_is_refused_beside_the_field(client, app_state, team):
    sign_in(client, team["outsider"], PASSWORD)
    for name, status, says in (
        ("Bad Name", 400, "Use 2 to 64 lowercase letters"),
        (team["org"], 409, "is taken"),
        (team["owner"], 409, "is taken"),  # personal namespaces share the names
        ("", 400, "Give the organisation a name"),
    ):
        r = post(client, "/ui/orgs", {"name": name})
        assert r.status_code == status and 'id="name-error"' in r.text and says in r.text, name


def test_the_list_shows_each_organisation_with_my_role_and_counts(client, app_state, team):
    with app_state.sessions.begin() as s:
        Images(s, app_state.blobs, app_state.bus).image(f"{team['org']}/app", "v1", [b"layer"])
    sign_in(client, team["reader"], PASSWORD)
    r = client.get("/ui/orgs")
    row = r.text.split(f'href="/ui/orgs/{team["org"]}"', 1)[1].split("</tr>", 1)[0]
    assert '<span class="badge role">reader</span>' in row
    assert '<td class="num">3</td>' in row and '<td class="num">1</td>' in row  # members, repositories


# -- who sees an organisation ------------------------------------------------------------------------------
def test_anyone_outside_gets_the_missing_organisation_page(client, app_state, team):
    sign_in(client, team["outsider"], PASSWORD)
    hidden = client.get(f"/ui/orgs/{team['org']}")
    missing = client.get("/ui/orgs/no-such-org")
    personal = client.get(f"/ui/orgs/{team['owner']}")  # a personal namespace is no organisation
    assert hidden.status_code == missing.status_code == personal.status_code == 404
    assert without_secrets(hidden.text) == without_secrets(missing.text) == without_secrets(personal.text)
    r = post(client, f"/ui/orgs/{team['org']}/members", {"username": team["outsider"], "role": "owner"})
    assert r.status_code == 404 and team["outsider"] not in members_of(app_state, team["org"])


def test_a_reader_sees_members_and_robots_read_only(client, app_state, team):
    with app_state.sessions.begin() as s:
        make_robot(s, team["org"], "ci", role="maintainer")
    sign_in(client, team["reader"], PASSWORD)
    r = client.get(f"/ui/orgs/{team['org']}")
    assert r.status_code == 200
    for name in (team["owner"], team["maintainer"], team["reader"], f"{team['org']}+ci"):
        assert name in r.text
    assert "<form" not in r.text.split('id="members"', 1)[1].split("</main>")[0]  # no forms at all
    assert "Only the owners" in r.text
    assert 'href="/ui/"' in r.text  # the repositories link
    r = post(client, f"/ui/orgs/{team['org']}/members", {"username": team["outsider"], "role": "reader"})
    assert r.status_code == 403 and "Only the organisation&#39;s owners" in r.text
    r = post(client, f"/ui/orgs/{team['org']}/robots/ci/delete")
    assert r.status_code == 403


def test_a_store_admin_manages_any_organisation(app, app_state, team):
    with app_state.sessions.begin() as s:
        admin = make_user(s, admin=True).username
    with browser(app, admin, PASSWORD) as b:
        r = b.get(f"/ui/orgs/{team['org']}")
        assert r.status_code == 200 and "store staff" in r.text and 'action="/ui/orgs/' in r.text


# -- members -----------------------------------------------------------------------------------------------
@pytest.fixture
def owner(client, team):
    sign_in(client, team["owner"], PASSWORD)
    return client


def test_an_owner_adds_a_member(owner, app_state, team):
    org = team["org"]
    r = post(owner, f"/ui/orgs/{org}/members", {"username": team["outsider"], "role": "maintainer"})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/orgs/{org}#members"
    assert f"{team['outsider']} joined {org} as maintainer" in owner.get(f"/ui/orgs/{org}").text
    assert members_of(app_state, org)[team["outsider"]] == "maintainer"


def test_adding_a_member_is_refused_beside_the_form(owner, app_state, team):
    org = team["org"]
    cases = [
        ({"username": "nobody-at-all", "role": "reader"}, 400, "There is no user called nobody-at-all"),
        ({"username": team["reader"], "role": "owner"}, 409, "is a member already"),
        ({"username": team["outsider"], "role": "emperor"}, 400, "Choose a role"),
        ({"username": "", "role": "reader"}, 400, "Enter the username"),
    ]
    for form, status, says in cases:
        r = post(owner, f"/ui/orgs/{org}/members", form)
        assert r.status_code == status and says in r.text, (form, r.status_code)
        assert 'class="field-error"' in r.text
    assert members_of(app_state, org)[team["reader"]] == "reader"


def test_changing_a_role_with_and_without_htmx(owner, app_state, team):
    org, reader = team["org"], team["reader"]
    r = post(owner, f"/ui/orgs/{org}/members/{reader}/role", {"role": "maintainer"})
    assert r.status_code == 303 and members_of(app_state, org)[reader] == "maintainer"
    r = htmx_post(owner, f"/ui/orgs/{org}/members/{reader}/role", {"role": "owner"})
    assert r.status_code == 200 and r.text.startswith(f'<tr id="member-{reader}">')
    assert "Saved." in r.text and '<option value="owner" selected>' in r.text
    assert members_of(app_state, org)[reader] == "owner"


def test_the_last_owner_stays(owner, app_state, team):
    org, me = team["org"], team["owner"]
    r = post(owner, f"/ui/orgs/{org}/members/{me}/role", {"role": "reader"})
    assert r.status_code == 409 and "at least one owner" in r.text and f'id="role-{me}-error"' in r.text
    r = htmx_post(owner, f"/ui/orgs/{org}/members/{me}/role", {"role": "reader"})
    assert r.status_code == 200 and "at least one owner" in r.text and 'role="alert"' in r.text
    r = post(owner, f"/ui/orgs/{org}/members/{me}/remove")
    assert r.status_code == 409 and "at least one owner" in r.text
    assert members_of(app_state, org)[me] == "owner"
    assert "Last owner" in owner.get(f"/ui/orgs/{org}").text  # and the page offers no removal


def test_removing_members_and_leaving(owner, app, app_state, team):
    org = team["org"]
    r = post(owner, f"/ui/orgs/{org}/members/{team['reader']}/remove")
    assert r.status_code == 303 and team["reader"] not in members_of(app_state, org)
    r = htmx_post(owner, f"/ui/orgs/{org}/members/{team['maintainer']}/remove")
    assert r.status_code == 200 and r.text.startswith('<tr class="gone-row">')
    assert team["maintainer"] not in members_of(app_state, org)
    r = post(owner, f"/ui/orgs/{org}/members/nobody/remove")
    assert r.status_code == 404
    # A second owner leaves by themselves: off to the list.
    post(owner, f"/ui/orgs/{org}/members", {"username": team["outsider"], "role": "owner"})
    with browser(app, team["outsider"], PASSWORD) as b:
        r = htmx_post(b, f"/ui/orgs/{org}/members/{team['outsider']}/remove")
        assert r.headers["HX-Redirect"] == "/ui/orgs"
        assert f"You left {org}" in b.get("/ui/orgs").text


# -- robots ------------------------------------------------------------------------------------------------
def test_an_owner_creates_a_robot_and_sees_its_secret_once(owner, app_state, team):
    org = team["org"]
    r = post(owner, f"/ui/orgs/{org}/robots", {"robot_name": "ci", "robot_role": "maintainer"})
    assert r.status_code == 201 and 'id="new-robot"' in r.text
    secret = r.text.split('id="new-robot"', 1)[1].split("<pre data-copy><code>", 1)[1].split("</code>")[0]
    assert f"podman login --tls-verify=false --username &#39;{org}+ci&#39; --password-stdin" in r.text
    token = owner.get("/token", params={"service": "dockyard"}, auth=(f"{org}+ci", secret))
    assert token.status_code == 200
    page = owner.get(f"/ui/orgs/{org}").text
    assert secret not in page and f"{org}+ci" in page
    row = page.split(f"<code>{org}+ci</code>", 1)[1].split("</tr>", 1)[0]
    assert "just now" in row and "never" not in row  # last used: the login above
    with app_state.sessions() as s:
        assert s.scalar(select(Robot.role).where(Robot.name == "ci")) == "maintainer"


def test_a_bad_robot_is_refused_beside_the_form(owner, app_state, team):
    org = team["org"]
    post(owner, f"/ui/orgs/{org}/robots", {"robot_name": "ci", "robot_role": "reader"})
    cases = [
        ({"robot_name": "Not OK", "robot_role": "reader"}, 400, "robot-name-error"),
        ({"robot_name": "ci", "robot_role": "reader"}, 409, "robot-name-error"),
        ({"robot_name": "deploy", "robot_role": "owner"}, 400, "robot-role-error"),
    ]
    for form, status, error in cases:
        r = post(owner, f"/ui/orgs/{org}/robots", form)
        assert r.status_code == status and f'id="{error}"' in r.text, form
        assert "secret-once" not in r.text


def test_an_owner_deletes_a_robot(owner, app_state, team):
    org = team["org"]
    with app_state.sessions.begin() as s:
        make_robot(s, org, "one")
        make_robot(s, org, "two")
    r = post(owner, f"/ui/orgs/{org}/robots/one/delete")
    assert r.status_code == 303 and "Robot " + org + "+one is deleted" in owner.get(f"/ui/orgs/{org}").text
    r = htmx_post(owner, f"/ui/orgs/{org}/robots/two/delete")
    assert r.status_code == 200 and r.text.startswith('<tr class="gone-row">')
    with app_state.sessions() as s:
        assert s.scalar(select(Robot.id)) is None
    assert post(owner, f"/ui/orgs/{org}/robots/two/delete").status_code == 404
