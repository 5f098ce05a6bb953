"""Who may call what: a role-by-endpoint permission matrix generated from the route table.

Every route of the application is a key, ``"<METHOD> <path template>"``: the Starlette routes of
``create_app`` (mounts descended into, the static files as one entry) and the registry's ``/v2`` routes of
``registry.views.VIEWS`` (with the base ``/v2/`` and ``/v2/_catalog``, which the registry routes itself).
HEAD is folded into GET: where a route answers HEAD as well, the GET cell sends both and expects the same.
EXPECTED says, for each key, what each of six callers gets; a route without a row, or a row without a route,
fails ``test_every_route_has_an_expectation`` / ``test_every_expectation_is_a_route``, so a new endpoint
cannot be added without deciding who may call it.

Every cell is a real request against a fresh application holding an organisation with a private repository
(a pushed, tagged, and for the scan endpoints scanned, image; for the publishing endpoints also the
organisation's complete publisher profile, a product of that repository with a draft revision, and a
catalogue image), made the way that caller would make it:

- anonymous: no credentials (on /v2: the anonymous token /token hands out, as registry clients do);
- outsider: a user who belongs to no organisation;
- robot: ``<org>+<name>``, a reader robot of the organisation, with its secret (pages: it cannot sign in,
  so it is anonymous there; /ui/login POST checks that it cannot);
- member: a maintainer of the organisation; owner: its owner; admin: the ``is_admin`` user.

/v2 uses Bearer JWTs from /token (and again, in ``test_permission_with_basic_credentials_on_v2``, the
caller's Basic credentials on each request, which must get the same answers); /api/v1 Basic credentials
(password or robot secret); /ui a session cookie from POST /ui/login. Destructive cells act on resources
made for them (a fresh image to delete, a fresh member to remove, a fresh product to edit or submit, a fresh
submitted one to withdraw or claim...), so no cell depends on another.

Outcomes:
- OK: 2xx or 3xx (but not a page's redirect to the login form);
- UNAUTH: 401, or on a page a 303 to ``/ui/login?next=...``;
- DENIED: the caller is known and may not: 403 on /api and /ui; on /v2 a 401 whose challenge says
  ``error="insufficient_scope"`` (Docker token auth has no 403: the token simply grants nothing);
- HIDDEN: answered as if the resource did not exist: 404 on /api and /ui, the insufficient_scope 401 on /v2;
- T_*: /token answers 200 and the token grants exactly these actions on the private repository.

And for the anonymous caller and the outsider, every refused cell is also sent against a resource that does
not exist (a missing repository in the same organisation, a missing organisation, a missing finding, a
missing product of the same organisation, a missing revision): the answers must be the same (status, error
code, message and challenge, names aside), so neither can learn that a private repository, or a private
organisation's product or draft, exists.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from tests.conftest import application_settings, application_state
from tests.support.factories import PASSWORD, make_org, make_robot, make_user, unique
from tests.support.pictures import picture
from tests.support.registry_client import OCI_INDEX, OCI_MANIFEST, access_of, protocol_guard
from tests.support.review_world import make_product, make_publisher, manifest_data
from tests.support.scanimages import ACTOR, Images, debian_layer, osv_record, write_feed

from dockyard.accounts.models import EmailToken, LoginFailure, Namespace, User
from dockyard.accounts.passwords import hash_secret, new_secret
from dockyard.accounts.services import AccountService
from dockyard.authz import Principal
from dockyard.config import Settings
from dockyard.db import MAX_ID, utcnow
from dockyard.events import Actor, EventBus
from dockyard.jobs import Worker
from dockyard.publishing import imaging
from dockyard.publishing.agreement import AGREEMENT_VERSION
from dockyard.publishing.assets import AssetStore
from dockyard.publishing.models import CatalogImage, ProductRevision, Publisher, PublisherEmailToken
from dockyard.registry.views import PATTERNS, VIEWS
from dockyard.scanning.models import ImageScan, ScanFinding
from dockyard.scanning.services import ScanService
from dockyard.web.app import create_app
from dockyard.web.context import AppState

ROLES = ("anonymous", "outsider", "robot", "member", "owner", "admin")

OK = "ok"
UNAUTH = "unauth"
DENIED = "denied"
HIDDEN = "hidden"
# What /token grants on the private repository.
T_NONE = "grant:"
T_PULL = "grant:pull"
T_ALL = "grant:delete,pull,push"

# Route keys the registry answers outside VIEWS (registry.views.app and dispatch route them by hand).
V2_BASE = "GET /v2/"
V2_CATALOG = "GET /v2/_catalog"
SCANS = "/api/v1/repositories/{name:path}/scans/{reference}"
REPO_PAGE = "/ui/repositories/{name:path}"
PUB = "/api/v1/publishers/{org}"
PRODUCT = PUB + "/products/{slug}"
PUB_PAGE = "/ui/orgs/{org}/publisher"
PRODUCT_PAGE = "/ui/orgs/{org}/products/{slug}"
REVISION_PAGE = "/ui/review/revisions/{revision_id:int}"
STORE_PRODUCT = "/products/{publisher}/{product}"
MY_HOOKS = "/api/v1/me/webhooks"
MY_HOOK = MY_HOOKS + "/{webhook_id}"
PUB_HOOKS = "/api/v1/publishers/{org}/webhooks"
PUB_HOOK = PUB_HOOKS + "/{webhook_id}"
MY_HOOK_PAGES = "/ui/account/webhooks"
MY_HOOK_PAGE = MY_HOOK_PAGES + "/{webhook_id:int}"
PUB_HOOK_PAGES = "/ui/orgs/{org}/webhooks"
PUB_HOOK_PAGE = PUB_HOOK_PAGES + "/{webhook_id:int}"

# One row per route key, one column per role (in ROLES order).
# fmt: off
EXPECTED: dict[str, tuple[str, str, str, str, str, str]] = {
    #                                                     anon    outsdr  robot   member  owner   admin
    "GET /healthz":                                       (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /metrics":                                       (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /static/{path:path}":                            (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /token":                                         (T_NONE, T_NONE, T_PULL, T_ALL,  T_ALL,  T_ALL),
    "POST /token":                                        (UNAUTH, T_NONE, T_PULL, T_ALL,  T_ALL,  T_ALL),
    # accounts API: robots never manage accounts; owners manage their organisation; admins everything
    "GET /api/v1/me":                                     (UNAUTH, OK,     OK,     OK,     OK,     OK),
    "POST /api/v1/me/sign-out-everywhere":                (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "GET /api/v1/openapi.json":                           (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /api/docs":                                      (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /api/v1/users":                                  (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    "POST /api/v1/users":                                 (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    "GET /api/v1/staff":                                  (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    "PUT /api/v1/staff/{username}/{role}":                (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    "DELETE /api/v1/staff/{username}/{role}":             (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    "POST /api/v1/orgs":                                  (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "GET /api/v1/orgs/{org}/members":                     (UNAUTH, DENIED, DENIED, DENIED, OK,     OK),
    "PUT /api/v1/orgs/{org}/members/{username}":          (UNAUTH, DENIED, DENIED, DENIED, OK,     OK),
    "DELETE /api/v1/orgs/{org}/members/{username}":       (UNAUTH, DENIED, DENIED, DENIED, OK,     OK),
    "GET /api/v1/orgs/{org}/robots":                      (UNAUTH, DENIED, DENIED, DENIED, OK,     OK),
    "POST /api/v1/orgs/{org}/robots":                     (UNAUTH, DENIED, DENIED, DENIED, OK,     OK),
    "DELETE /api/v1/orgs/{org}/robots/{name}":            (UNAUTH, DENIED, DENIED, DENIED, OK,     OK),
    "GET /api/v1/tokens":                                 (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "POST /api/v1/tokens":                                (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "DELETE /api/v1/tokens/{token_id}":                   (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "PUT /api/v1/repositories/{name:path}/visibility":    (UNAUTH, DENIED, DENIED, DENIED, OK,     OK),
    # scan results: the namespace's members (robots too) and admins; rescans need push; reclassify is staff's
    "GET " + SCANS:                                       (UNAUTH, HIDDEN, OK,     OK,     OK,     OK),
    "POST " + SCANS:                                      (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "GET " + SCANS + "/findings":                         (UNAUTH, HIDDEN, OK,     OK,     OK,     OK),
    "GET " + SCANS + "/sbom":                             (UNAUTH, HIDDEN, OK,     OK,     OK,     OK),
    "POST /api/v1/findings/{finding_id}/reclassify":      (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    # pages: users only (robots cannot sign in); HEAD /ui/login must show the form as GET does, not be a login
    "GET /ui/login":                                      (OK,     OK,     OK,     OK,     OK,     OK),
    # store search: public, page and API
    "GET /search":                                        (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /api/v1/search":                                 (OK,     OK,     OK,     OK,     OK,     OK),
    "POST /ui/login":                                     (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST /ui/logout":                                    (OK,     OK,     OK,     OK,     OK,     OK),
    "POST /ui/sign-out-everywhere":                       (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "GET /ui/":                                           (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "GET /":                                              (OK,     OK,     OK,     OK,     OK,     OK),
    # sign-up, confirmation and reset links: anyone (signed-in users are sent on to their repositories)
    "GET /ui/signup":                                     (OK,     OK,     OK,     OK,     OK,     OK),
    "POST /ui/signup":                                    (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /ui/verify-email":                               (OK,     OK,     OK,     OK,     OK,     OK),
    "POST /ui/verify-email":                              (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /ui/verify-email/resend":                        (OK,     OK,     OK,     OK,     OK,     OK),
    "POST /ui/verify-email/resend":                       (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /ui/password/forgot":                            (OK,     OK,     OK,     OK,     OK,     OK),
    "POST /ui/password/forgot":                           (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /ui/password/reset":                             (OK,     OK,     OK,     OK,     OK,     OK),
    "POST /ui/password/reset":                            (OK,     OK,     OK,     OK,     OK,     OK),
    # one's own account: signed-in users
    "GET /ui/account":                                    (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST /ui/account/email":                             (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST /ui/account/password":                          (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST /ui/account/tokens":                            (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST /ui/account/tokens/{token_id:int}/revoke":      (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    # organisations: members see theirs (read-only below owner), owners and admins manage, others get 404
    "GET /ui/orgs":                                       (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST /ui/orgs":                                      (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "GET /ui/orgs/{org}":                                 (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "POST /ui/orgs/{org}/members":                        (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     OK),
    "POST /ui/orgs/{org}/members/{username}/role":        (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     OK),
    "POST /ui/orgs/{org}/members/{username}/remove":      (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     OK),
    "POST /ui/orgs/{org}/robots":                         (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     OK),
    "POST /ui/orgs/{org}/robots/{name}/delete":           (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     OK),
    # the registry browser: a private repository (and a namespace holding nothing else) looks missing to those
    # who may not pull it; changes need a sign-in first, then delete (maintainers) or visibility (owners)
    "GET /ui/namespaces/{name}":                          (HIDDEN, HIDDEN, HIDDEN, OK,     OK,     OK),
    "GET " + REPO_PAGE:                                   (HIDDEN, HIDDEN, HIDDEN, OK,     OK,     OK),
    "GET " + REPO_PAGE + "/-/manifests/{digest}":         (HIDDEN, HIDDEN, HIDDEN, OK,     OK,     OK),
    "GET " + REPO_PAGE + "/-/manifests/{digest}/delete":  (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "POST " + REPO_PAGE + "/-/manifests/{digest}/delete": (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "GET " + REPO_PAGE + "/-/tags/{tag}/delete":          (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "POST " + REPO_PAGE + "/-/tags/{tag}/delete":         (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "GET " + REPO_PAGE + "/-/visibility":                 (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     OK),
    "POST " + REPO_PAGE + "/-/visibility":                (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     OK),
    "GET " + REPO_PAGE + "/-/scans/{reference}":          (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    # publisher profiles (issue 9): owners edit, members read, the store team reads (a store-admin too: it
    # holds every permission but a publisher's own, authz.PUBLISHER_OWN); robots hold no api scope
    "GET " + PUB:                                         (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "PUT " + PUB:                                         (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "POST " + PUB + "/agreement":                         (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "POST " + PUB + "/email/resend":                      (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    # the mailed link proves the mailbox, whoever follows it (no sign-in, credentials ignored)
    "POST /api/v1/publishers/email/verify":               (OK,     OK,     OK,     OK,     OK,     OK),
    # catalogue images are uploaded by those who edit products (owners and maintainers)
    "POST " + PUB + "/images":                            (UNAUTH, HIDDEN, DENIED, OK,     OK,     DENIED),
    # products: maintainers and owners edit, submit and withdraw; members and the store team read; anyone
    # else is told the organisation (or the product) does not exist
    "GET " + PUB + "/products":                           (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "POST " + PUB + "/products":                          (UNAUTH, HIDDEN, DENIED, OK,     OK,     DENIED),
    "GET " + PRODUCT:                                     (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "PUT " + PRODUCT:                                     (UNAUTH, HIDDEN, DENIED, OK,     OK,     DENIED),
    "POST " + PRODUCT + "/submit":                        (UNAUTH, HIDDEN, DENIED, OK,     OK,     DENIED),
    "POST " + PRODUCT + "/withdraw":                      (UNAUTH, HIDDEN, DENIED, OK,     OK,     DENIED),
    # the thread: the publisher's people and the store team (the latter's internal notes are theirs alone)
    "GET " + PRODUCT + "/thread":                         (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "POST " + PRODUCT + "/comments":                      (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    # the review: the store team's. A revision is hidden from those who may not read its product; the
    # publisher's own people read it but may not decide it
    "GET /api/v1/review/queue":                           (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    "POST /api/v1/review/revisions/{revision_id}/{action}": (UNAUTH, HIDDEN, DENIED, DENIED, DENIED, OK),
    # public: the manifest's JSON Schema, and logos and screenshots (they are shown in the catalogue)
    "GET /api/v1/schemas/product.json":                   (OK,     OK,     OK,     OK,     OK,     OK),
    # an image no published revision uses yet (public once it is the company logo or live: unit-tested)
    "GET /catalog-images/{id:int}/{rendition}":           (HIDDEN, HIDDEN, HIDDEN, OK,     OK,     OK),
    # publishing pages: as their API (robots cannot sign in). The profile form is the owners', the product
    # editor the maintainers' and owners'; the empty "new product" form (and a product's editor) renders for
    # every reader, read-only for those who may not edit (the store team included), as the org page does
    "GET " + PUB_PAGE:                                    (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "POST " + PUB_PAGE:                                   (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     DENIED),
    "POST " + PUB_PAGE + "/email/resend":                 (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     DENIED),
    # the product editor's upload form: those who edit products (not the store-admin, see PUBLISHER_OWN)
    "POST /ui/orgs/{org}/catalog-images":                 (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     DENIED),
    "GET /ui/publisher-email/verify":                     (OK,     OK,     OK,     OK,     OK,     OK),
    "POST /ui/publisher-email/verify":                    (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /ui/orgs/{org}/dashboard":                       (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "GET /ui/orgs/{org}/products":                        (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "GET /ui/orgs/{org}/products/new":                    (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "POST /ui/orgs/{org}/products/new":                   (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     DENIED),
    "GET " + PRODUCT_PAGE + "/edit":                      (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "POST " + PRODUCT_PAGE + "/edit":                     (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     DENIED),
    "GET " + PRODUCT_PAGE + "/review":                    (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "POST " + PRODUCT_PAGE + "/move":                     (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     DENIED),
    # the review pages: the queue and the moves are the store team's; a revision's page is also shown to the
    # publisher's people (internal notes filtered, no store moves offered), and they answer on its thread
    "GET /ui/review":                                     (UNAUTH, DENIED, UNAUTH, DENIED, DENIED, OK),
    "GET " + REVISION_PAGE:                               (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "POST " + REVISION_PAGE + "/move":                    (UNAUTH, HIDDEN, UNAUTH, DENIED, DENIED, OK),
    "POST " + REVISION_PAGE + "/comments":                (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    # registry: readers pull, maintainers push and delete; the catalog is the admin's
    V2_BASE:                                              (OK,     OK,     OK,     OK,     OK,     OK),
    V2_CATALOG:                                           (DENIED, DENIED, DENIED, DENIED, DENIED, OK),
    "GET /v2/{name}/manifests/{reference}":               (HIDDEN, HIDDEN, OK,     OK,     OK,     OK),
    "PUT /v2/{name}/manifests/{reference}":               (HIDDEN, HIDDEN, DENIED, OK,     OK,     OK),
    "DELETE /v2/{name}/manifests/{reference}":            (HIDDEN, HIDDEN, DENIED, OK,     OK,     OK),
    "GET /v2/{name}/blobs/{digest}":                      (HIDDEN, HIDDEN, OK,     OK,     OK,     OK),
    "DELETE /v2/{name}/blobs/{digest}":                   (HIDDEN, HIDDEN, DENIED, OK,     OK,     OK),
    "POST /v2/{name}/blobs/uploads/":                     (HIDDEN, HIDDEN, DENIED, OK,     OK,     OK),
    "PATCH /v2/{name}/blobs/uploads/{upload}":            (HIDDEN, HIDDEN, DENIED, OK,     OK,     OK),
    "PUT /v2/{name}/blobs/uploads/{upload}":              (HIDDEN, HIDDEN, DENIED, OK,     OK,     OK),
    "GET /v2/{name}/blobs/uploads/{upload}":              (HIDDEN, HIDDEN, DENIED, OK,     OK,     OK),
    "DELETE /v2/{name}/blobs/uploads/{upload}":           (HIDDEN, HIDDEN, DENIED, OK,     OK,     OK),
    "GET /v2/{name}/tags/list":                           (HIDDEN, HIDDEN, OK,     OK,     OK,     OK),
    "GET /v2/{name}/referrers/{digest}":                  (HIDDEN, HIDDEN, OK,     OK,     OK,     OK),
    # publishing: resolving a review thread (owners and maintainers with product:edit, reviewers, admins;
    # readers and their robots read the thread only); the Publishing page lists one's own organisations
    "POST /api/v1/publishers/{org}/products/{slug}/comments/{comment_id}/resolve":
                                                          (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "POST /ui/orgs/{org}/products/{slug}/comments/{comment_id:int}/resolve":
                                                          (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "GET /ui/publishing":                                 (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    # entitlements (issue 10): any signed-in user gets free tiers and cancels their own (robots hold no api
    # scope and cannot sign in); revoking a customer's is the publisher's editors' and the store-admin's, and
    # anyone else is told the entitlement does not exist
    "GET /api/v1/entitlements":                           (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "POST /api/v1/entitlements":                          (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "DELETE /api/v1/entitlements/{entitlement_id}":       (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "POST /api/v1/entitlements/{entitlement_id}/revoke":  (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "GET /products/{publisher}/{product}/get":            (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST /products/{publisher}/{product}/get":           (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "GET /ui/subscriptions":                              (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST /ui/subscriptions/{entitlement_id:int}/cancel": (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    # the store (issue 10, storepages): its pages and product details are public; badges are the
    # store-admin's (checked before the product is looked up, so a missing product is refused alike)
    "GET /ui/start":                                      (OK,     OK,     OK,     OK,     OK,     OK),
    "GET " + STORE_PRODUCT:                               (OK,     OK,     OK,     OK,     OK,     OK),
    "POST " + STORE_PRODUCT + "/badges":                  (UNAUTH, DENIED, UNAUTH, DENIED, DENIED, OK),
    "GET /publishers/{publisher}":                        (OK,     OK,     OK,     OK,     OK,     OK),
    "GET /api/v1" + STORE_PRODUCT:                        (OK,     OK,     OK,     OK,     OK,     OK),
    "PUT /api/v1" + STORE_PRODUCT + "/badges/{kind}":     (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    "DELETE /api/v1" + STORE_PRODUCT + "/badges/{kind}":  (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    # compliance (issue 11): a product's findings and VEX statements are its publisher's and the store
    # team's (robots hold no api scope; owners and maintainers file statements: the store-admin does
    # not write for a publisher); deciding, extending and the overview are the store team's, refused before
    # anything is looked up
    "GET /api/v1" + STORE_PRODUCT + "/compliance":        (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "GET /api/v1" + STORE_PRODUCT + "/vex":               (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "POST /api/v1" + STORE_PRODUCT + "/vex":              (UNAUTH, HIDDEN, DENIED, OK,     OK,     DENIED),
    "POST /api/v1/compliance/vex/{vex_id}/decision":      (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    "POST /api/v1/compliance/clocks/{clock_id}/extension": (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    "GET /api/v1/compliance":                             (UNAUTH, DENIED, DENIED, DENIED, DENIED, OK),
    "GET /ui/compliance":                                 (UNAUTH, DENIED, UNAUTH, DENIED, DENIED, OK),
    "GET " + PRODUCT_PAGE + "/compliance":                (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
    "POST " + PRODUCT_PAGE + "/compliance/vex":           (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     DENIED),
    "POST /ui/compliance/vex/{vex_id:int}/decision":      (UNAUTH, DENIED, UNAUTH, DENIED, DENIED, OK),
    "POST /ui/compliance/clocks/{clock_id:int}/extension": (UNAUTH, DENIED, UNAUTH, DENIED, DENIED, OK),
    # webhooks (issue 11): a user's own (people, not robots: no api scope, no sign-in), each acting on the
    # caller's own endpoint; a publisher's are its owners' (not its maintainers', nor the store-admin's: see
    # authz.PUBLISHER_OWN), and anyone who may not see the organisation is told it does not exist
    "GET " + MY_HOOKS:                                    (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "POST " + MY_HOOKS:                                   (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "GET " + MY_HOOK:                                     (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "PATCH " + MY_HOOK:                                   (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "DELETE " + MY_HOOK:                                  (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "POST " + MY_HOOK + "/secret":                        (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "POST " + MY_HOOK + "/ping":                          (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "GET " + MY_HOOK + "/deliveries":                     (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "POST " + MY_HOOK + "/deliveries/{delivery_id}/redeliver": (UNAUTH, OK, DENIED, OK,     OK,     OK),
    "GET " + PUB_HOOKS:                                   (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "POST " + PUB_HOOKS:                                  (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "GET " + PUB_HOOK:                                    (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "PATCH " + PUB_HOOK:                                  (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "DELETE " + PUB_HOOK:                                 (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "POST " + PUB_HOOK + "/secret":                       (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "POST " + PUB_HOOK + "/ping":                         (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "GET " + PUB_HOOK + "/deliveries":                    (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "POST " + PUB_HOOK + "/deliveries/{delivery_id}/redeliver":
                                                          (UNAUTH, HIDDEN, DENIED, DENIED, OK,     DENIED),
    "GET " + MY_HOOK_PAGES:                               (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST " + MY_HOOK_PAGES:                              (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "GET " + MY_HOOK_PAGE:                                (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST " + MY_HOOK_PAGE:                               (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST " + MY_HOOK_PAGE + "/secret":                   (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST " + MY_HOOK_PAGE + "/ping":                     (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST " + MY_HOOK_PAGE + "/delete":                   (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST " + MY_HOOK_PAGE + "/deliveries/{delivery_id:int}/redeliver":
                                                          (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "GET " + PUB_HOOK_PAGES:                              (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     DENIED),
    "POST " + PUB_HOOK_PAGES:                             (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     DENIED),
    "GET " + PUB_HOOK_PAGE:                               (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     DENIED),
    "POST " + PUB_HOOK_PAGE:                              (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     DENIED),
    "POST " + PUB_HOOK_PAGE + "/secret":                  (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     DENIED),
    "POST " + PUB_HOOK_PAGE + "/ping":                    (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     DENIED),
    "POST " + PUB_HOOK_PAGE + "/delete":                  (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     DENIED),
    "POST " + PUB_HOOK_PAGE + "/deliveries/{delivery_id:int}/redeliver":
                                                          (UNAUTH, HIDDEN, UNAUTH, DENIED, OK,     DENIED),
    # notifications (issue 11): one's own preferences and watches (robots hold no api scope and cannot sign
    # in); watching needs read access to the repository's scan results, and a private repository one may not
    # read answers as a missing one
    "GET /api/v1/me/notifications":                       (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "PUT /api/v1/me/notifications":                       (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "GET /api/v1/me/watches":                             (UNAUTH, OK,     DENIED, OK,     OK,     OK),
    "PUT /api/v1/repositories/{name:path}/watch":         (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "DELETE /api/v1/repositories/{name:path}/watch":      (UNAUTH, HIDDEN, DENIED, OK,     OK,     OK),
    "GET /ui/account/notifications":                      (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST /ui/account/notifications":                     (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST /ui/account/notifications/entitlements/{entitlement_id:int}":
                                                          (UNAUTH, OK,     UNAUTH, OK,     OK,     OK),
    "POST " + REPO_PAGE + "/-/watch":                     (UNAUTH, HIDDEN, UNAUTH, OK,     OK,     OK),
}
# fmt: on


# -- the route table ---------------------------------------------------------------------------------------
def _v2_template(pattern: re.Pattern[str]) -> str:
    """``^(?P<name>.+)/tags/list$`` -> ``/v2/{name}/tags/list``."""
    tail = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern.pattern)
    return "/v2/" + tail.removeprefix("^").removesuffix("$").replace("/?", "/")


def route_table(app: Any) -> dict[str, set[str]]:
    """Every route key of the application, with the methods its path answers (to know where HEAD goes)."""
    table: dict[str, set[str]] = {}

    def add(methods: set[str], path: str) -> None:
        for method in methods - ({"HEAD"} if "GET" in methods else set()):
            table[f"{method} {path}"] = methods

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # a FastAPI router included in the API app
                walk(route.original_router.routes, prefix + (route.include_context.prefix or ""))
            elif isinstance(route, Mount) and route.routes:
                walk(route.routes, prefix + route.path)
            elif isinstance(route, Mount):  # an app of its own (the static files): one entry
                add({"GET", "HEAD"}, f"{prefix}{route.path}/{{path:path}}")
            elif isinstance(route, Route):
                add(set(route.methods or {"GET", "HEAD"}), prefix + route.path)
            else:
                raise AssertionError(f"a route of a kind this matrix does not know: {route!r}")

    walk(app.routes, "")
    templates = {kind: _v2_template(pattern) for pattern, kind in PATTERNS}
    v2: dict[str, set[str]] = {}
    for kind, method in VIEWS:
        assert kind in templates, f"/v2 view kind {kind!r} has no path pattern"
        v2.setdefault(templates[kind], set()).add(method)
    for path, methods in v2.items():
        add(methods, path)
    add({"GET", "HEAD"}, V2_BASE.split()[1])  # registry.views.app answers GET and HEAD on /v2/
    add({"GET"}, V2_CATALOG.split()[1])  # dispatch hands /v2/_catalog to catalog()
    return table


# -- the world every cell runs in --------------------------------------------------------------------------
@dataclass
class World:
    org: str
    repo: str
    tag: str
    digest: str
    layer: str
    payload: bytes
    users: dict[str, str]  # role -> username
    robot: tuple[str, str]
    finding: int | None
    # publishing (issue 9), made for the publishing routes only: the organisation's complete publisher
    # profile, a product of it with a draft revision, and a catalogue image with its renditions stored
    slug: str = ""
    revision: int = 0
    image: int = 0


@dataclass(frozen=True)
class Target:
    """What a request names: the real private resources, or ones that do not exist (the twin).

    The twin's product is a missing one of the real organisation, and its revision a missing id: an
    outsider must not learn that a private organisation's product, or a draft of it, exists."""

    repo: str
    org: str
    finding: int
    slug: str = ""
    revision: int = 0


CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


def build_world(app: Any, state: AppState, feed_dir: Path, *, scan: bool, publishing: bool = False) -> World:
    with state.sessions.begin() as s:
        users = {
            "outsider": make_user(s).username,
            "member": make_user(s).username,
            "owner": make_user(s).username,
            "admin": make_user(s, admin=True).username,
        }
        org = make_org(s, owner=users["owner"], members={users["member"]: "maintainer"})
        robot = make_robot(s, org, role="reader")
        if scan:
            feed = write_feed(feed_dir, osv_record("CVE-2031-0001", "zlib", vector=CRITICAL))
            ScanService(s, state.blobs, state.bus, state.settings).update_vulndb([feed], ACTOR)
    repo = f"{org}/app"
    with state.sessions.begin() as s:
        layer = debian_layer([("zlib1g", "1:1.2.13.dfsg-1", "zlib")])
        stored = Images(s, state.blobs, state.bus).image(repo, "v1", [layer])
    finding = None
    if scan:
        Worker(state.sessions, app.state.jobs, bus=state.bus, services=state.services).run_until_idle()
        with state.sessions() as s:
            image = select(ImageScan.id).where(ImageScan.digest == stored.digest).scalar_subquery()
            finding = s.scalar(select(ScanFinding.id).where(ScanFinding.image_id == image).limit(1))
        assert finding is not None, "the scan found nothing: the scan cells would test nothing"
    world = World(
        org=org,
        repo=repo,
        tag="v1",
        digest=stored.digest,
        layer="sha256:" + hashlib.sha256(layer).hexdigest(),
        payload=stored.payload,
        users=users,
        robot=robot,
        finding=finding,
    )
    if publishing:
        with state.sessions.begin() as s:
            publisher = make_publisher(s, org)  # complete: verified email, agreement, logo
            world.slug = unique("prod")
            world.revision = make_product(s, publisher, org, world.slug, **product_images(repo)).id
            checked = imaging.process(imaging.ImageKind.LOGO, picture(512, 512))
            assets = AssetStore(state.blobs)
            image = CatalogImage(
                publisher_id=publisher.id,
                kind=checked.kind.value,
                media_type=checked.media_type,
                width=checked.width,
                height=checked.height,
                renditions={r.name: assets.put(r.data) for r in checked.renditions},
            )
            s.add(image)
            s.flush()
            world.image = image.id
    return world


def product_images(repo: str) -> dict[str, Any]:
    """A product's images and tiers made of the world's private repository (the tag pushed): submittable."""
    return {
        "images": [{"name": "server", "repository": repo, "tags": ["v1"]}],
        "tiers": [{"name": "Community", "description": "Single node", "price": "free", "images": ["server"]}],
    }


def needs_publishing(key: str) -> bool:
    words = (
        "publisher",
        "product",
        "/review",
        "catalog-images",
        "dashboard",
        "entitlement",
        "subscri",
        "compliance",
    )
    return any(word in key for word in words)


@dataclass
class Cell:
    """One caller against one application: its credentials per protocol, and fresh resources to act on."""

    client: TestClient
    state: AppState
    world: World
    role: str
    basic: bool = False  # /v2 with the caller's credentials on each request instead of a token
    _signed_in: bool = field(default=False)
    # Names this cell made up for the real target (fresh products, revisions): the refusal it gets must read
    # as the twin's does, these names aside.
    minted: list[str] = field(default_factory=list)

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self.role == "anonymous":
            return None
        if self.role == "robot":
            return self.world.robot
        return self.world.users[self.role], PASSWORD

    def send(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        return self.client.request(method, url, headers=headers or {}, follow_redirects=False, **kw)

    # per protocol
    def api(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """/api/v1 (and the open endpoints) with Basic credentials: a password or a robot secret."""
        self.client.cookies.clear()
        headers = dict(kw.pop("headers", {}))
        if self.credentials is not None:
            raw = ":".join(self.credentials).encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return self.send(method, url, headers=headers, **kw)

    def token_response(self, scopes: list[str], method: str = "GET") -> httpx.Response:
        self.client.cookies.clear()
        params = [("service", "dockyard")] + [("scope", s) for s in scopes]
        if method == "GET":
            return self.client.get("/token", params=params, auth=self.credentials)
        username, password = self.credentials or ("", "")
        form = {"grant_type": "password", "username": username, "password": password, "service": "dockyard"}
        return self.client.post("/token", data={**form, "scope": scopes})

    def v2(self, method: str, url: str, scopes: list[str], **kw: Any) -> httpx.Response:
        """/v2 with the Bearer token this caller gets from /token for ``scopes`` (anonymous: none given);
        or, in a ``basic`` cell, with the caller's Basic credentials on the request itself."""
        if self.basic and self.credentials is not None:
            raw = ":".join(self.credentials).encode()
            headers = {"Authorization": "Basic " + base64.b64encode(raw).decode(), **kw.pop("headers", {})}
            return self.send(method, url, headers=headers, **kw)
        r = self.token_response(scopes)
        assert r.status_code == 200, r.text
        headers = {"Authorization": f"Bearer {r.json()['token']}", **kw.pop("headers", {})}
        return self.send(method, url, headers=headers, **kw)

    def page(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """/ui with this caller's session cookie; robots and the anonymous caller have none."""
        if self.role not in ("anonymous", "robot") and not self._signed_in:
            r = self.sign_in(*self.credentials)  # type: ignore[misc]
            assert r.status_code == 303 and r.headers["location"] == "/ui/", (r.status_code, r.text)
            self._signed_in = True
        headers = {"Origin": "http://127.0.0.1:5999"} if method == "POST" else {}
        if method == "POST":  # a page's form carries the session's CSRF token
            kw["data"] = {**kw.get("data", {}), "csrf_token": self.csrf()}
        return self.send(method, url, headers=headers, **kw)

    def csrf(self) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.client.get("/ui/login").text)
        assert found, "the sign-in form carries no CSRF token"
        return found.group(1)

    def sign_in(self, username: str, password: str) -> httpx.Response:
        form = {"username": username, "password": password, "next": "/ui/", "csrf_token": self.csrf()}
        return self.send("POST", "/ui/login", data=form, headers={"Origin": "http://127.0.0.1:5999"})

    # fresh resources, made with the services (every rule applies) in the real organisation
    def fresh_user(self, member_of: str | None = None) -> str:
        with self.state.sessions.begin() as s:
            username = make_user(s).username
            if member_of:
                AccountService(s, EventBus()).set_member(member_of, username, "reader")
        return username

    def fresh_robot(self) -> str:
        with self.state.sessions.begin() as s:
            return make_robot(s, self.world.org)[0].split("+", 1)[1]

    def fresh_staff_user(self, staff: str | None = None) -> str:
        """A new user, holding the store-team role ``staff`` when given."""
        with self.state.sessions.begin() as s:
            return make_user(s, staff=(staff,) if staff else ()).username

    def fresh_token_id(self) -> int:
        """A token of this caller's own (robots and the anonymous caller have none: the owner's)."""
        user = self.world.users.get(self.role, self.world.users["owner"])
        with self.state.sessions.begin() as s:
            token, _ = AccountService(s, EventBus()).create_token(user, unique("tok"))
            return token.id

    def fresh_link(self, purpose: str) -> str:
        """The secret of a new, valid link (verify: of a new unconfirmed account; reset: of a new user)."""
        secret = new_secret(32)
        with self.state.sessions.begin() as s:
            user = make_user(s)
            user.email = f"{user.username}@example.org"
            if purpose == "verify":
                user.email_verified_at = None
            s.add(
                EmailToken(
                    user_id=user.id,
                    purpose=purpose,
                    email=user.email,
                    token_hash=hash_secret(secret),
                    expires_at=utcnow() + dt.timedelta(hours=1),
                )
            )
        return secret

    def fresh_image(self) -> str:
        with self.state.sessions.begin() as s:
            images = Images(s, self.state.blobs, self.state.bus)
            return images.image(self.world.repo, unique("t"), [unique("layer").encode()]).digest

    def fresh_tag(self) -> str:
        """A new tag in the real repository (of a new image), for a cell to delete."""
        tag = unique("t")
        with self.state.sessions.begin() as s:
            images = Images(s, self.state.blobs, self.state.bus)
            images.image(self.world.repo, tag, [unique("layer").encode()])
        return tag

    def fresh_blob(self) -> str:
        with self.state.sessions.begin() as s:
            return Images(s, self.state.blobs, self.state.bus).blob(self.world.repo, unique("b").encode())[0]

    def fresh_upload(self) -> str:
        upload = str(uuid.uuid4())
        self.state.blobs.start_upload(upload, self.world.repo)
        return upload

    # publishing: fresh products and revisions of the real organisation; a twin names missing ones instead
    def fresh_product(self, t: Target, *, submitted: bool = False) -> str:
        """A new product with a draft revision (submitted through the review service when ``submitted``), or
        the twin's missing product."""
        if t.slug != self.world.slug:
            return t.slug
        return self._product(submitted)[0]

    def fresh_revision(self, t: Target, *, submitted: bool = False) -> int:
        """The revision of a new product (see fresh_product), or the twin's missing revision."""
        if t.revision != self.world.revision:
            return t.revision
        return self._product(submitted)[1]

    def _product(self, submitted: bool) -> tuple[str, int]:
        slug = unique("prod")
        with self.state.sessions.begin() as s:
            publisher = s.scalar(select(Publisher).join(Namespace).where(Namespace.name == self.world.org))
            revision = make_product(s, publisher, self.world.org, slug, **product_images(self.world.repo))
            if submitted:
                owner = self.world.users["owner"]
                user_id = s.scalar(select(User.id).where(User.username == owner))
                who = Principal(kind="user", name=owner, user_id=user_id)
                actor = Actor(user_id=user_id, name=owner, kind="user")
                self.state.services(s).reviews.submit(self.world.org, slug, who, actor)
            self.minted += [slug, str(revision.id)]
            return slug, revision.id

    def unconfirmed_company_email(self) -> None:
        """The publisher's company address waiting for its confirmation (a new link may then be sent)."""
        with self.state.sessions.begin() as s:
            publisher = s.scalar(select(Publisher).join(Namespace).where(Namespace.name == self.world.org))
            publisher.email_verified_at = None

    def fresh_company_link(self) -> str:
        """The secret of a new, valid confirmation link for the publisher's company address."""
        secret = new_secret(32)
        with self.state.sessions.begin() as s:
            publisher = s.scalar(select(Publisher).join(Namespace).where(Namespace.name == self.world.org))
            now = utcnow()
            s.add(
                PublisherEmailToken(
                    publisher_id=publisher.id,
                    email=publisher.email,
                    token_hash=hash_secret(secret),
                    created_at=now,
                    expires_at=now + dt.timedelta(hours=1),
                )
            )
        return secret


# -- one request per key -----------------------------------------------------------------------------------
Builder = Callable[[Cell, str, Target], httpx.Response]
BUILDERS: dict[str, Builder] = {}


def builds(key: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        BUILDERS[key] = fn
        return fn

    return register


def repo_scope(t: Target) -> list[str]:
    return [f"repository:{t.repo}:pull,push,delete"]


@builds("GET /healthz")
def healthz(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/healthz")


@builds("GET /metrics")
def metrics(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/metrics")


@builds("GET /static/{path:path}")
def static(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/static/dockyard.css")


@builds("GET /token")
def token_get(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.token_response(repo_scope(t))


@builds("POST /token")
def token_post(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.token_response(repo_scope(t), "POST")


@builds("GET /api/v1/me")
def me(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/me")


@builds("POST /api/v1/me/sign-out-everywhere")
def api_sign_out_everywhere(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/me/sign-out-everywhere")


@builds("GET /api/v1/openapi.json")
def openapi(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/openapi.json")


@builds("GET /api/docs")
def api_docs(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/docs")


@builds("GET /api/v1/users")
def list_users(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/users")


@builds("GET /api/v1/staff")
def list_staff(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/staff")


@builds("PUT /api/v1/staff/{username}/{role}")
def grant_staff(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/staff/{c.fresh_staff_user()}/store-support")


@builds("DELETE /api/v1/staff/{username}/{role}")
def revoke_staff(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/staff/{c.fresh_staff_user(staff='store-support')}/store-support")


@builds("POST /api/v1/users")
def create_user(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/users", json={"username": unique("newuser"), "password": PASSWORD})


@builds("POST /api/v1/orgs")
def create_org(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/orgs", json={"name": unique("neworg")})


@builds("GET /api/v1/orgs/{org}/members")
def members(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/orgs/{t.org}/members")


@builds("PUT /api/v1/orgs/{org}/members/{username}")
def set_member(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/orgs/{t.org}/members/{c.fresh_user()}", json={"role": "reader"})


@builds("DELETE /api/v1/orgs/{org}/members/{username}")
def remove_member(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/orgs/{t.org}/members/{c.fresh_user(member_of=c.world.org)}")


@builds("GET /api/v1/orgs/{org}/robots")
def robots(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/orgs/{t.org}/robots")


@builds("POST /api/v1/orgs/{org}/robots")
def create_robot(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/orgs/{t.org}/robots", json={"name": unique("bot"), "role": "reader"})


@builds("DELETE /api/v1/orgs/{org}/robots/{name}")
def delete_robot(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/orgs/{t.org}/robots/{c.fresh_robot()}")


@builds("GET /api/v1/tokens")
def tokens(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/tokens")


@builds("POST /api/v1/tokens")
def create_token(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/tokens", json={"name": unique("tok")})


@builds("DELETE /api/v1/tokens/{token_id}")
def revoke_token(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/tokens/{c.fresh_token_id()}")


@builds("PUT /api/v1/repositories/{name:path}/visibility")
def visibility(c: Cell, m: str, t: Target) -> httpx.Response:
    # Private again: the repository stays private whoever succeeds.
    return c.api(m, f"/api/v1/repositories/{t.repo}/visibility", json={"public": False})


@builds("GET /api/v1/repositories/{name:path}/scans/{reference}")
def scan_report(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/repositories/{t.repo}/scans/{c.world.tag}")


@builds("POST /api/v1/repositories/{name:path}/scans/{reference}")
def rescan(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/repositories/{t.repo}/scans/{c.world.tag}")


@builds("GET /api/v1/repositories/{name:path}/scans/{reference}/findings")
def scan_findings(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/repositories/{t.repo}/scans/{c.world.tag}/findings")


@builds("GET /api/v1/repositories/{name:path}/scans/{reference}/sbom")
def scan_sbom(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/repositories/{t.repo}/scans/{c.world.tag}/sbom")


@builds("POST /api/v1/findings/{finding_id}/reclassify")
def reclassify(c: Cell, m: str, t: Target) -> httpx.Response:
    body = {"severity": "Minor", "reason": "accepted risk (permission matrix)"}
    return c.api(m, f"/api/v1/findings/{t.finding}/reclassify", json=body)


@builds("GET /search")
def search_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/search?q=app&certified=1")


@builds("GET /api/v1/search")
def search_api(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/search?q=app&free=1")


@builds("GET /ui/login")
def login_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/login")


@builds("POST /ui/login")
def login(c: Cell, m: str, t: Target) -> httpx.Response:
    # Everyone with their own credentials (the anonymous caller has none): robots must not get in.
    return c.sign_in(*(c.credentials or ("", "")))


@builds("POST /ui/logout")
def logout(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/logout")


@builds("POST /ui/sign-out-everywhere")
def page_sign_out_everywhere(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/sign-out-everywhere")


@builds("GET /ui/")
def home(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/")


@builds("GET /")
def start_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/")


@builds("GET /ui/signup")
def signup_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/signup")


@builds("POST /ui/signup")
def signup(c: Cell, m: str, t: Target) -> httpx.Response:
    name = unique("signup")
    form = {"username": name, "email": f"{name}@example.org", "password": PASSWORD, "confirm": PASSWORD}
    return c.page(m, "/ui/signup", data=form)


@builds("GET /ui/verify-email")
def verify_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/verify-email?token={c.fresh_link('verify')}")


@builds("POST /ui/verify-email")
def verify(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/verify-email", data={"token": c.fresh_link("verify")})


@builds("GET /ui/verify-email/resend")
def resend_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/verify-email/resend")


@builds("POST /ui/verify-email/resend")
def resend(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/verify-email/resend", data={"identifier": unique("someone")})


@builds("GET /ui/password/forgot")
def forgot_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/password/forgot")


@builds("POST /ui/password/forgot")
def forgot(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/password/forgot", data={"identifier": unique("someone") + "@example.org"})


@builds("GET /ui/password/reset")
def reset_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/password/reset?token={c.fresh_link('reset')}")


@builds("POST /ui/password/reset")
def reset(c: Cell, m: str, t: Target) -> httpx.Response:
    form = {"token": c.fresh_link("reset"), "password": PASSWORD, "confirm": PASSWORD}
    return c.page(m, "/ui/password/reset", data=form)


@builds("GET /ui/account")
def account_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/account")


@builds("POST /ui/account/email")
def account_email(c: Cell, m: str, t: Target) -> httpx.Response:
    form = {"email": unique("new") + "@example.org", "current_password": PASSWORD}
    return c.page(m, "/ui/account/email", data=form)


@builds("POST /ui/account/password")
def account_password(c: Cell, m: str, t: Target) -> httpx.Response:
    # The same password again: a change all the same (every other session ends), and later cells still work.
    form = {"current_password": PASSWORD, "new_password": PASSWORD, "confirm_password": PASSWORD}
    return c.page(m, "/ui/account/password", data=form)


@builds("POST /ui/account/tokens")
def account_tokens(c: Cell, m: str, t: Target) -> httpx.Response:
    form = {"token_name": unique("tok"), "scopes": "pull", "expires": "7"}
    return c.page(m, "/ui/account/tokens", data=form)


@builds("POST /ui/account/tokens/{token_id:int}/revoke")
def account_token_revoke(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/account/tokens/{c.fresh_token_id()}/revoke")


@builds("GET /ui/orgs")
def orgs_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/orgs")


@builds("POST /ui/orgs")
def orgs_create(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/orgs", data={"name": unique("neworg")})


@builds("GET /ui/orgs/{org}")
def org_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/orgs/{t.org}")


@builds("POST /ui/orgs/{org}/members")
def org_add_member(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/orgs/{t.org}/members", data={"username": c.fresh_user(), "role": "reader"})


@builds("POST /ui/orgs/{org}/members/{username}/role")
def org_member_role(c: Cell, m: str, t: Target) -> httpx.Response:
    member = c.fresh_user(member_of=c.world.org)
    return c.page(m, f"/ui/orgs/{t.org}/members/{member}/role", data={"role": "maintainer"})


@builds("POST /ui/orgs/{org}/members/{username}/remove")
def org_member_remove(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/orgs/{t.org}/members/{c.fresh_user(member_of=c.world.org)}/remove")


@builds("POST /ui/orgs/{org}/robots")
def org_robots(c: Cell, m: str, t: Target) -> httpx.Response:
    form = {"robot_name": unique("bot"), "robot_role": "reader"}
    return c.page(m, f"/ui/orgs/{t.org}/robots", data=form)


@builds("POST /ui/orgs/{org}/robots/{name}/delete")
def org_robot_delete(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/orgs/{t.org}/robots/{c.fresh_robot()}/delete")


@builds("GET /ui/namespaces/{name}")
def namespace_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/namespaces/{t.org}")


@builds("GET " + REPO_PAGE)
def repository_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/repositories/{t.repo}")


@builds("GET " + REPO_PAGE + "/-/manifests/{digest}")
def manifest_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/repositories/{t.repo}/-/manifests/{c.world.digest}")


@builds("GET " + REPO_PAGE + "/-/manifests/{digest}/delete")
def confirm_delete_manifest_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/repositories/{t.repo}/-/manifests/{c.world.digest}/delete")


@builds("POST " + REPO_PAGE + "/-/manifests/{digest}/delete")
def delete_manifest_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/repositories/{t.repo}/-/manifests/{c.fresh_image()}/delete")


@builds("GET " + REPO_PAGE + "/-/tags/{tag}/delete")
def confirm_delete_tag_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/repositories/{t.repo}/-/tags/{c.world.tag}/delete")


@builds("POST " + REPO_PAGE + "/-/tags/{tag}/delete")
def delete_tag_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/repositories/{t.repo}/-/tags/{c.fresh_tag()}/delete")


@builds("GET " + REPO_PAGE + "/-/visibility")
def confirm_visibility_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/repositories/{t.repo}/-/visibility?public=true")


@builds("POST " + REPO_PAGE + "/-/visibility")
def visibility_page(c: Cell, m: str, t: Target) -> httpx.Response:
    # Private again: the repository stays private whoever succeeds.
    return c.page(m, f"/ui/repositories/{t.repo}/-/visibility", data={"public": "false"})


@builds("GET " + REPO_PAGE + "/-/scans/{reference}")
def scan_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/repositories/{t.repo}/-/scans/{c.world.tag}")


@builds(V2_BASE)
def v2_base(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.v2(m, "/v2/", [])


@builds(V2_CATALOG)
def v2_catalog(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.v2(m, "/v2/_catalog", ["registry:catalog:*"])


@builds("GET /v2/{name}/manifests/{reference}")
def get_manifest(c: Cell, m: str, t: Target) -> httpx.Response:
    accept = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
    return c.v2(m, f"/v2/{t.repo}/manifests/{c.world.tag}", repo_scope(t), headers=accept)


@builds("PUT /v2/{name}/manifests/{reference}")
def put_manifest(c: Cell, m: str, t: Target) -> httpx.Response:
    # The pushed image's manifest under a new tag: every blob it names is in the repository.
    url = f"/v2/{t.repo}/manifests/{unique('put')}"
    headers = {"Content-Type": OCI_MANIFEST}
    return c.v2(m, url, repo_scope(t), content=c.world.payload, headers=headers)


@builds("DELETE /v2/{name}/manifests/{reference}")
def delete_manifest(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.v2(m, f"/v2/{t.repo}/manifests/{c.fresh_image()}", repo_scope(t))


@builds("GET /v2/{name}/blobs/{digest}")
def get_blob(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.v2(m, f"/v2/{t.repo}/blobs/{c.world.layer}", repo_scope(t))


@builds("DELETE /v2/{name}/blobs/{digest}")
def delete_blob(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.v2(m, f"/v2/{t.repo}/blobs/{c.fresh_blob()}", repo_scope(t))


@builds("POST /v2/{name}/blobs/uploads/")
def start_upload(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.v2(m, f"/v2/{t.repo}/blobs/uploads/", repo_scope(t))


CHUNK = b"a chunk of a layer"
OCTETS = {"Content-Type": "application/octet-stream"}


@builds("PATCH /v2/{name}/blobs/uploads/{upload}")
def patch_upload(c: Cell, m: str, t: Target) -> httpx.Response:
    url = f"/v2/{t.repo}/blobs/uploads/{c.fresh_upload()}"
    return c.v2(m, url, repo_scope(t), content=CHUNK, headers=OCTETS)


@builds("PUT /v2/{name}/blobs/uploads/{upload}")
def put_upload(c: Cell, m: str, t: Target) -> httpx.Response:
    digest = "sha256:" + hashlib.sha256(CHUNK).hexdigest()
    url = f"/v2/{t.repo}/blobs/uploads/{c.fresh_upload()}?digest={digest}"
    return c.v2(m, url, repo_scope(t), content=CHUNK, headers=OCTETS)


@builds("GET /v2/{name}/blobs/uploads/{upload}")
def get_upload(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.v2(m, f"/v2/{t.repo}/blobs/uploads/{c.fresh_upload()}", repo_scope(t))


@builds("DELETE /v2/{name}/blobs/uploads/{upload}")
def delete_upload(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.v2(m, f"/v2/{t.repo}/blobs/uploads/{c.fresh_upload()}", repo_scope(t))


@builds("GET /v2/{name}/tags/list")
def list_tags(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.v2(m, f"/v2/{t.repo}/tags/list", repo_scope(t))


@builds("GET /v2/{name}/referrers/{digest}")
def referrers(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.v2(m, f"/v2/{t.repo}/referrers/{c.world.digest}", repo_scope(t))


# publishing (issue 9): a product's routes name the real organisation and a product (the world's, a fresh one
# where the cell changes it, or the twin's missing one); a revision's, a revision id likewise
def product_url(c: Cell, slug: str, tail: str = "") -> str:
    return f"/api/v1/publishers/{c.world.org}/products/{slug}{tail}"


def product_page(c: Cell, slug: str, tail: str) -> str:
    return f"/ui/orgs/{c.world.org}/products/{slug}{tail}"


def company_profile(c: Cell) -> dict[str, str]:
    """The profile's fields as the world has them (saving them again changes nothing)."""
    return {
        "legal_name": "Acme Ltd",
        "website": "https://acme.example",
        "phone": "+442071838750",
        "email": "hello@acme.example",
        "story": "We make databases.",
    }


def product_manifest(c: Cell, slug: str) -> dict[str, Any]:
    # No logo nor screenshots: a draft may lack them (the catalogue images have their own rows).
    return manifest_data(c.world.org, slug, None, None, screenshots=[], **product_images(c.world.repo))


@builds("GET " + PUB)
def publisher_profile(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/publishers/{t.org}")


@builds("PUT " + PUB)
def publisher_update(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/publishers/{t.org}", json={"story": "We make databases, still."})


@builds("POST " + PUB + "/agreement")
def publisher_agreement(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/publishers/{t.org}/agreement", json={"version": AGREEMENT_VERSION})


@builds("POST " + PUB + "/email/resend")
def publisher_email_resend(c: Cell, m: str, t: Target) -> httpx.Response:
    c.unconfirmed_company_email()
    return c.api(m, f"/api/v1/publishers/{t.org}/email/resend")


@builds("POST /api/v1/publishers/email/verify")
def publisher_email_verify(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/publishers/email/verify", json={"token": c.fresh_company_link()})


@builds("POST " + PUB + "/images")
def publisher_image(c: Cell, m: str, t: Target) -> httpx.Response:
    url = f"/api/v1/publishers/{t.org}/images?kind=logo"
    return c.api(m, url, content=picture(512, 512), headers={"Content-Type": "image/png"})


@builds("GET " + PUB + "/products")
def products_list(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/publishers/{t.org}/products")


@builds("POST " + PUB + "/products")
def product_create(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/publishers/{t.org}/products", json=product_manifest(c, unique("prod")))


@builds("GET " + PRODUCT)
def product_get(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, product_url(c, t.slug))


@builds("PUT " + PRODUCT)
def product_update(c: Cell, m: str, t: Target) -> httpx.Response:
    slug = c.fresh_product(t)
    body = product_manifest(c, slug) | {"short_description": "Edited by the permission matrix."}
    return c.api(m, product_url(c, slug), json=body)


@builds("POST " + PRODUCT + "/submit")
def product_submit(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, product_url(c, c.fresh_product(t), "/submit"))


@builds("POST " + PRODUCT + "/withdraw")
def product_withdraw(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, product_url(c, c.fresh_product(t, submitted=True), "/withdraw"))


@builds("GET " + PRODUCT + "/thread")
def product_thread(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, product_url(c, t.slug, "/thread"))


@builds("POST " + PRODUCT + "/comments")
def product_comment(c: Cell, m: str, t: Target) -> httpx.Response:
    body = {
        "body": "A word from the permission matrix.",
        "anchor_kind": "field",
        "anchor": "short_description",
    }
    return c.api(m, product_url(c, c.fresh_product(t), "/comments"), json=body)


@builds("GET /api/v1/review/queue")
def review_queue(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/review/queue")


@builds("POST /api/v1/review/revisions/{revision_id}/{action}")
def review_move(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/review/revisions/{c.fresh_revision(t, submitted=True)}/claim")


@builds("GET /api/v1/schemas/product.json")
def product_schema(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/schemas/product.json")


@builds("GET /catalog-images/{id:int}/{rendition}")
def catalog_image(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/catalog-images/{c.world.image}/128")


@builds("GET " + PUB_PAGE)
def publisher_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/orgs/{t.org}/publisher")


@builds("POST " + PUB_PAGE)
def publisher_page_save(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/orgs/{t.org}/publisher", data=company_profile(c))


@builds("POST " + PUB_PAGE + "/email/resend")
def publisher_page_resend(c: Cell, m: str, t: Target) -> httpx.Response:
    c.unconfirmed_company_email()
    return c.page(m, f"/ui/orgs/{t.org}/publisher/email/resend")


@builds("POST /ui/orgs/{org}/catalog-images")
def catalog_image_upload_page(c: Cell, m: str, t: Target) -> httpx.Response:
    files = {"file": ("logo.png", picture(512, 512), "image/png")}
    return c.page(m, f"/ui/orgs/{t.org}/catalog-images", data={"kind": "logo"}, files=files)


@builds("GET /ui/publisher-email/verify")
def company_email_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/publisher-email/verify?token={c.fresh_company_link()}")


@builds("POST /ui/publisher-email/verify")
def company_email_verify(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/publisher-email/verify", data={"token": c.fresh_company_link()})


@builds("GET /ui/orgs/{org}/dashboard")
def dashboard(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/orgs/{t.org}/dashboard")


@builds("GET /ui/orgs/{org}/products")
def products_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/orgs/{t.org}/products")


@builds("GET /ui/orgs/{org}/products/new")
def new_product_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/orgs/{t.org}/products/new")


@builds("POST /ui/orgs/{org}/products/new")
def new_product(c: Cell, m: str, t: Target) -> httpx.Response:
    form = {"name": "Matrix Database", "slug": unique("prod"), "short_description": "A draft."}
    return c.page(m, f"/ui/orgs/{t.org}/products/new", data=form)


@builds("GET " + PRODUCT_PAGE + "/edit")
def edit_product_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, product_page(c, t.slug, "/edit"))


@builds("POST " + PRODUCT_PAGE + "/edit")
def edit_product(c: Cell, m: str, t: Target) -> httpx.Response:
    form = {"name": "Matrix Database", "short_description": "Edited by the permission matrix."}
    return c.page(m, product_page(c, c.fresh_product(t), "/edit"), data=form)


@builds("GET " + PRODUCT_PAGE + "/review")
def product_review_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, product_page(c, t.slug, "/review"))


@builds("POST " + PRODUCT_PAGE + "/move")
def product_move_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, product_page(c, c.fresh_product(t), "/move"), data={"action": "submit"})


@builds("GET /ui/review")
def review_queue_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/review")


@builds("GET " + REVISION_PAGE)
def revision_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/review/revisions/{t.revision}")


@builds("POST " + REVISION_PAGE + "/move")
def revision_move_page(c: Cell, m: str, t: Target) -> httpx.Response:
    rid = c.fresh_revision(t, submitted=True)
    return c.page(m, f"/ui/review/revisions/{rid}/move", data={"action": "claim"})


@builds("POST " + REVISION_PAGE + "/comments")
def revision_comment_page(c: Cell, m: str, t: Target) -> httpx.Response:
    form = {"body": "A word from the permission matrix.", "next": "/ui/"}
    return c.page(m, f"/ui/review/revisions/{c.fresh_revision(t)}/comments", data=form)


def fresh_thread(c: Cell) -> tuple[str, int]:
    """The organisation's product ``acme-db`` (made on first use, with its publisher) with a new message
    from its owner: the product's slug and the message's id, for a cell to resolve."""
    from sqlalchemy import select

    from dockyard.publishing.models import Product, ProductRevision, ReviewComment
    from dockyard.publishing.reads import publisher_for

    with c.state.sessions.begin() as s:
        publisher = publisher_for(s, c.world.org)
        assert publisher is not None
        product = s.scalar(select(Product).where(Product.publisher_id == publisher.id))
        if product is None:
            product = Product(publisher_id=publisher.id, slug="acme-db")
            s.add(product)
            s.flush()
            manifest = {"name": "Acme Database", "slug": product.slug}
            s.add(ProductRevision(product_id=product.id, number=1, state="draft", manifest=manifest))
            s.flush()
        revision = s.scalar(select(ProductRevision).where(ProductRevision.product_id == product.id))
        assert revision is not None
        product.working_revision_id = revision.id
        message = ReviewComment(
            product_id=product.id,
            revision_id=revision.id,
            author_name=c.world.users["owner"],
            from_store=False,
            internal=False,
            anchor_kind="none",
            anchor="",
            body="Is the tier right?",
        )
        s.add(message)
        s.flush()
        return product.slug, message.id


@builds("POST /api/v1/publishers/{org}/products/{slug}/comments/{comment_id}/resolve")
def resolve_comment_api(c: Cell, m: str, t: Target) -> httpx.Response:
    slug, comment_id = fresh_thread(c)
    return c.api(m, f"/api/v1/publishers/{t.org}/products/{slug}/comments/{comment_id}/resolve")


@builds("POST /ui/orgs/{org}/products/{slug}/comments/{comment_id:int}/resolve")
def resolve_comment_page(c: Cell, m: str, t: Target) -> httpx.Response:
    slug, comment_id = fresh_thread(c)
    return c.page(m, f"/ui/orgs/{t.org}/products/{slug}/comments/{comment_id}/resolve")


@builds("GET /ui/publishing")
def publishing_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/publishing")


# entitlements: the world's product made live (as publishing leaves it: pins, a live revision), and
# entitlements of its free tier
def live_product(c: Cell) -> int:
    """The world's product on the store (its revision published with the pushed tag pinned); its id."""
    from dockyard.publishing.models import ProductRevision

    with c.state.sessions.begin() as s:
        revision = s.get(ProductRevision, c.world.revision)
        revision.state = "published"
        revision.pins = {"server": {"repository": c.world.repo, "tags": {c.world.tag: c.world.digest}}}
        revision.product.live_revision_id = revision.id
        return revision.product_id


def fresh_entitlement(c: Cell, username: str | None = None) -> int:
    """An active entitlement to the live product's free tier, of ``username`` (default: the caller; the
    anonymous caller and robots: a new user's)."""
    from dockyard.entitlements.models import Entitlement

    product_id = live_product(c)
    username = username or c.world.users.get(c.role) or c.fresh_user()
    with c.state.sessions.begin() as s:
        user_id = s.scalar(select(User.id).where(User.username == username))
        row = Entitlement(user_id=user_id, product_id=product_id, tier="Community", license_url=None)
        s.add(row)
        s.flush()
        return row.id


@builds("GET /api/v1/entitlements")
def list_entitlements(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/entitlements")


@builds("POST /api/v1/entitlements")
def get_entitlement(c: Cell, m: str, t: Target) -> httpx.Response:
    live_product(c)
    body = {"publisher": t.org, "product": t.slug, "tier": "Community", "accept_license": True}
    return c.api(m, "/api/v1/entitlements", json=body)


@builds("DELETE /api/v1/entitlements/{entitlement_id}")
def cancel_entitlement_api(c: Cell, m: str, t: Target) -> httpx.Response:
    eid = fresh_entitlement(c) if t.slug == c.world.slug else t.revision
    return c.api(m, f"/api/v1/entitlements/{eid}")


@builds("POST /api/v1/entitlements/{entitlement_id}/revoke")
def revoke_entitlement_api(c: Cell, m: str, t: Target) -> httpx.Response:
    eid = fresh_entitlement(c, c.fresh_user()) if t.slug == c.world.slug else t.revision
    return c.api(m, f"/api/v1/entitlements/{eid}/revoke", json={"reason": "abuse"})


@builds("GET /products/{publisher}/{product}/get")
def get_tier_page(c: Cell, m: str, t: Target) -> httpx.Response:
    live_product(c)
    return c.page(m, f"/products/{t.org}/{t.slug}/get?tier=Community")


@builds("POST /products/{publisher}/{product}/get")
def get_tier_post(c: Cell, m: str, t: Target) -> httpx.Response:
    live_product(c)
    return c.page(m, f"/products/{t.org}/{t.slug}/get", data={"tier": "Community", "accept_license": "on"})


@builds("GET /ui/subscriptions")
def subscriptions_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/subscriptions")


@builds("POST /ui/subscriptions/{entitlement_id:int}/cancel")
def cancel_subscription_page(c: Cell, m: str, t: Target) -> httpx.Response:
    eid = fresh_entitlement(c) if t.slug == c.world.slug else t.revision
    return c.page(m, f"/ui/subscriptions/{eid}/cancel")


# -- the store (storepages) ----------------------------------------------------------------------------------
def store_listed(c: Cell, t: Target, *, badge: str | None = None) -> str:
    """The world's product as the store lists it (a listing row over its draft revision: the pages read
    listings only), optionally holding ``badge``; the twin's missing product is left missing."""
    if t.slug != c.world.slug:
        return t.slug
    from dockyard.store.models import Listing, ProductBadge

    with c.state.sessions.begin() as s:
        publisher = s.scalar(select(Publisher).join(Namespace).where(Namespace.name == c.world.org))
        revision = s.get(ProductRevision, c.world.revision)
        product_id = revision.product_id
        if s.scalar(select(Listing.id).where(Listing.product_id == product_id)) is None:
            s.add(
                Listing(
                    product_id=product_id, publisher_id=publisher.id, revision_id=c.world.revision,
                    publisher_slug=c.world.org, product_slug=c.world.slug, publisher_name="Acme Ltd",
                    name="Acme Database", category="Database",
                )
            )  # fmt: skip
        found = select(ProductBadge.id).where(ProductBadge.product_id == product_id)
        found = found.where(ProductBadge.kind == badge)
        if badge and s.scalar(found) is None:
            s.add(ProductBadge(product_id=product_id, kind=badge, reason="for the cell"))
    return t.slug


@builds("GET /ui/start")
def registry_start(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/start")


@builds("GET " + STORE_PRODUCT)
def store_product(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/products/{t.org}/{store_listed(c, t)}")


@builds("POST " + STORE_PRODUCT + "/badges")
def store_badge_form(c: Cell, m: str, t: Target) -> httpx.Response:
    data = {"kind": "official", "action": "grant", "reason": "the maker"}
    return c.page(m, f"/products/{t.org}/{store_listed(c, t)}/badges", data=data)


@builds("GET /publishers/{publisher}")
def store_publisher(c: Cell, m: str, t: Target) -> httpx.Response:
    store_listed(c, t)
    return c.page(m, f"/publishers/{t.org}")


@builds("GET /api/v1" + STORE_PRODUCT)
def store_product_api(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/products/{t.org}/{store_listed(c, t)}")


@builds("PUT /api/v1" + STORE_PRODUCT + "/badges/{kind}")
def store_badge_grant(c: Cell, m: str, t: Target) -> httpx.Response:
    url = f"/api/v1/products/{t.org}/{store_listed(c, t)}/badges/official"
    return c.api(m, url, json={"reason": "the maker"})


@builds("DELETE /api/v1" + STORE_PRODUCT + "/badges/{kind}")
def store_badge_withdraw(c: Cell, m: str, t: Target) -> httpx.Response:
    url = f"/api/v1/products/{t.org}/{store_listed(c, t, badge='official')}/badges/official"
    return c.api(m, url, json={"reason": "not the maker"})


# -- webhooks (issue 11) -------------------------------------------------------------------------------------
# A literal public address: the matrix's app keeps the SSRF guard on, and no name resolves in the sandbox.
HOOK_URL = "https://93.184.215.14/hooks/dockyard"


def fresh_hook(c: Cell, t: Target, *, publisher: bool) -> tuple[int, int]:
    """A new endpoint (the caller's own, the anonymous caller's and robots': the owner's; or the world's
    publisher's) with one delivery: (endpoint id, delivery id); the twin's missing ones for a twin."""
    if t.org != c.world.org:
        # The twin names the organisation that does not exist, with the ids made for the real request: a
        # refusal must read the same, ids included (the sign-in form's "next" repeats the path).
        return getattr(c, "hook_ids", (MAX_ID, MAX_ID))
    from dockyard.publishing.reads import publisher_for
    from dockyard.webhooks.models import WebhookDelivery, WebhookEndpoint
    from dockyard.webhooks.signing import new_secret, secret_box

    box = secret_box(c.state.settings.data_dir / "keys")
    with c.state.sessions.begin() as s:
        owner = {"user_id": None, "publisher_id": None}
        if publisher:
            owner["publisher_id"] = publisher_for(s, c.world.org, create=True).id
        else:
            username = c.world.users.get(c.role, c.world.users["owner"])
            owner["user_id"] = s.scalar(select(User.id).where(User.username == username))
        endpoint = WebhookEndpoint(
            url=HOOK_URL, kinds=["product.hold"], secret_sealed=box.seal(new_secret()), **owner
        )
        s.add(endpoint)
        s.flush()
        delivery = WebhookDelivery(
            endpoint_id=endpoint.id, event_id=unique("evt_matrix"), kind="product.hold", body="{}"
        )
        s.add(delivery)
        s.flush()
        c.hook_ids = (endpoint.id, delivery.id)  # type: ignore[attr-defined]
        return endpoint.id, delivery.id


HOOK_BODY = {"url": HOOK_URL, "kinds": ["product.hold"], "description": "from the matrix"}
HOOK_FORM = {"url": HOOK_URL, "kinds": "product.hold", "description": "from the matrix", "active": "on"}


def hook_api(c: Cell, m: str, t: Target, tail: str | None, *, publisher: bool, **kw: Any) -> httpx.Response:
    """``tail`` None: the collection; else the path after a fresh endpoint's id."""
    base = f"/api/v1/publishers/{t.org}/webhooks" if publisher else "/api/v1/me/webhooks"
    if tail is None:
        return c.api(m, base, **kw)
    hook, delivery = fresh_hook(c, t, publisher=publisher)
    return c.api(m, f"{base}/{hook}" + tail.format(delivery=delivery), **kw)


def hook_page(c: Cell, m: str, t: Target, tail: str | None, *, publisher: bool, **kw: Any) -> httpx.Response:
    """``tail`` None: the collection; else the path after a fresh endpoint's id."""
    base = f"/ui/orgs/{t.org}/webhooks" if publisher else "/ui/account/webhooks"
    if tail is None:
        return c.page(m, base, **kw)
    hook, delivery = fresh_hook(c, t, publisher=publisher)
    return c.page(m, f"{base}/{hook}" + tail.format(delivery=delivery), **kw)


HOOK_CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    # (method, route tail, request tail, request body)
    ("GET", "", "", {}),
    ("POST", "", "", {"json": HOOK_BODY}),
    ("GET", "/{webhook_id}", "", {}),
    ("PATCH", "/{webhook_id}", "", {"json": {"description": "patched"}}),
    ("DELETE", "/{webhook_id}", "", {}),
    ("POST", "/{webhook_id}/secret", "/secret", {}),
    ("POST", "/{webhook_id}/ping", "/ping", {}),
    ("GET", "/{webhook_id}/deliveries", "/deliveries", {}),
    ("POST", "/{webhook_id}/deliveries/{delivery_id}/redeliver", "/deliveries/{delivery}/redeliver", {}),
]
HOOK_PAGE_CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("GET", "", "", {}),
    ("POST", "", "", {"data": HOOK_FORM}),
    ("GET", "/{webhook_id:int}", "", {}),
    ("POST", "/{webhook_id:int}", "", {"data": HOOK_FORM}),
    ("POST", "/{webhook_id:int}/secret", "/secret", {}),
    ("POST", "/{webhook_id:int}/ping", "/ping", {}),
    ("POST", "/{webhook_id:int}/delete", "/delete", {}),
    (
        "POST",
        "/{webhook_id:int}/deliveries/{delivery_id:int}/redeliver",
        "/deliveries/{delivery}/redeliver",
        {},
    ),
]


def _register_hook_builders() -> None:
    for publisher, base in ((False, MY_HOOKS), (True, PUB_HOOKS)):
        for method, route, tail, kw in HOOK_CASES:
            key = f"{method} {base}{route}"

            def build(
                c: Cell, m: str, t: Target, tail=tail, kw=kw, publisher=publisher, route=route
            ) -> httpx.Response:
                return hook_api(c, m, t, tail if route else None, publisher=publisher, **kw)

            BUILDERS[key] = build
    for publisher, base in ((False, MY_HOOK_PAGES), (True, PUB_HOOK_PAGES)):
        for method, route, tail, kw in HOOK_PAGE_CASES:
            key = f"{method} {base}{route}"

            def build_page(
                c: Cell, m: str, t: Target, tail=tail, kw=kw, publisher=publisher, route=route
            ) -> httpx.Response:
                return hook_page(c, m, t, tail if route else None, publisher=publisher, **kw)

            BUILDERS[key] = build_page


_register_hook_builders()


# -- outcomes ----------------------------------------------------------------------------------------------
def protocol(key: str) -> str:
    path = key.split(" ", 1)[1]
    if path.startswith("/v2"):
        return "registry"
    if path.startswith(("/ui", "/products/")):
        return "page"
    return "api"


def expected_outcome(expected: str, proto: str) -> str:
    """What the cell's expectation looks like on the wire, in outcome()'s terms."""
    if expected in (DENIED, HIDDEN) and proto == "registry":
        return "insufficient_scope"
    return {DENIED: "403", HIDDEN: "404"}.get(expected, expected)


def outcome(response: httpx.Response, proto: str, granted: str | None = None) -> str:
    status = response.status_code
    if proto == "page" and status == 303 and response.headers["location"].startswith("/ui/login?next="):
        return UNAUTH
    if status < 400:
        if granted is not None:
            actions = access_of(response.json()["token"]).get(("repository", granted), [])
            return "grant:" + ",".join(sorted(actions))
        return OK
    if status == 401:
        challenge = response.headers.get("www-authenticate", "")
        if proto == "registry" and 'error="insufficient_scope"' in challenge:
            return "insufficient_scope"
        return UNAUTH
    return str(status)


def describe(response: httpx.Response) -> str:
    r, location = response, response.headers.get("location", "")
    return f"{r.request.method} {r.request.url.path} -> {r.status_code} {location} {r.text[:300]}"


def fingerprint(
    response: httpx.Response, world: World, twin: Target, minted: list[str] | None = None
) -> tuple[Any, ...]:
    """What a caller sees of a refusal, with the twin's names put back to the real ones (and the products and
    revisions named, made up for the cell or missing, all alike)."""
    slugs = [n for n in (world.slug, twin.slug, *(minted or [])) if n and not n.isdigit()]
    ids = [n for n in (str(world.revision), str(twin.revision), *(minted or [])) if n.isdigit() and n != "0"]

    def norm(text: str) -> str:
        text = text.replace(twin.repo, world.repo).replace(twin.org, world.org)
        if world.slug:  # the same replacements in both answers: what is not a name stays as it is
            for slug in slugs:
                text = text.replace(slug, "<product>")
            for number in ids:
                text = re.sub(rf"\b{number}\b", "<revision>", text)
        return text

    headers = {k: norm(response.headers.get(k, "")) for k in ("www-authenticate", "content-type", "location")}
    return response.status_code, headers, norm(response.text)


# -- the tests ---------------------------------------------------------------------------------------------
# One application for the module's 1,200 cells, not one each: its start and the emptying of every table
# after each test were a third of the matrix's time. Every cell still builds a world of its own (new users,
# organisation, repository) and acts on fresh resources, so no cell sees another's.
@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Settings:
    return application_settings(tmp_path_factory.mktemp("matrix") / "data", database_url)


@pytest.fixture(scope="module")
def app_state(settings: Settings, engine: Engine) -> Iterator[AppState]:
    yield from application_state(settings, engine)


@pytest.fixture(scope="module")
def app(settings: Settings, app_state: AppState) -> Any:
    return create_app(settings, state=app_state)


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1:5999") as c:
        yield c


@pytest.fixture(autouse=True)
def _guard(client: TestClient, app_state: AppState, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    # What one cell leaves in the shared application that another would meet: the client's cookies, and the
    # failed sign-ins the login throttle counts per address (the robot's refused page sign-ins add up).
    client.cookies.clear()
    with app_state.sessions.begin() as s:
        s.execute(delete(LoginFailure))
    hooks = client.event_hooks["response"]
    installed = len(hooks)
    try:
        yield from protocol_guard(client, monkeypatch)
    finally:
        del hooks[installed:]  # this cell's response check


def test_every_route_has_an_expectation(app: Any) -> None:
    missing = sorted(set(route_table(app)) - set(EXPECTED))
    assert not missing, f"routes nobody decided the permissions of (add them to EXPECTED): {missing}"


def test_every_expectation_is_a_route(app: Any) -> None:
    stale = sorted(set(EXPECTED) - set(route_table(app)))
    assert not stale, f"EXPECTED rows for routes that no longer exist: {stale}"


def test_every_expectation_has_a_request() -> None:
    assert set(BUILDERS) == set(EXPECTED)


def needs_scan(key: str) -> bool:
    return "/scans/" in key or "/findings/" in key or "compliance" in key or "/vex" in key


def cell(key: str, role: str) -> Any:
    """A cell's parameters. On PostgreSQL the cells of the callers that are refused most, and whose refusals
    must read as for a missing resource (ids at the column's limit, names that are not there), run again;
    what the callers with access read and write there runs on both databases in the functional tests."""
    marks = () if role in ("anonymous", "outsider") else (pytest.mark.sqlite_only,)
    return pytest.param(key, role, id=f"{key} as {role}", marks=marks)


@pytest.mark.parametrize("key,role", [cell(key, role) for key in EXPECTED for role in ROLES])
def test_permission(key: str, role: str, app: Any, app_state: AppState, client: TestClient, tmp_path: Path):
    check_cell(key, role, app, app_state, client, tmp_path)


@pytest.mark.parametrize(
    "key,role",
    [
        cell(key, role)
        for key in EXPECTED
        if protocol(key) == "registry"
        for role in ROLES
        if role != "anonymous"
    ],
)
def test_permission_with_basic_credentials_on_v2(
    key: str, role: str, app: Any, app_state: AppState, client: TestClient, tmp_path: Path
):
    """The /v2 cells again, with the caller's password (a robot: its secret) as Basic credentials on each
    request instead of a token from /token: the same answers, refusals included."""
    check_cell(key, role, app, app_state, client, tmp_path, basic=True)


def check_cell(
    key: str,
    role: str,
    app: Any,
    app_state: AppState,
    client: TestClient,
    tmp_path: Path,
    *,
    basic: bool = False,
) -> None:
    world = build_world(
        app, app_state, tmp_path / "feed", scan=needs_scan(key), publishing=needs_publishing(key)
    )
    real = Target(world.repo, world.org, world.finding or 1, world.slug, world.revision)
    # The largest id the API accepts; a product that is not there.
    twin = Target(f"{world.org}/missing", "nosuchorg", MAX_ID, "no-such-product", MAX_ID)
    expected = EXPECTED[key][ROLES.index(role)]
    proto = protocol(key)
    grants = expected.startswith("grant:")
    want = expected_outcome(expected, proto)
    build = BUILDERS[key]
    cell = Cell(client, app_state, world, role, basic=basic)
    method = key.split()[0]
    heads = method == "GET" and "HEAD" in route_table(app)[key] and not grants
    methods = [method, "HEAD"] if heads else [method]
    for method in methods:
        response = build(cell, method, real)
        got = outcome(response, proto, world.repo if grants else None)
        assert got == want, f"{role}: expected {want}, got {got}: {describe(response)}"
        if role in ("anonymous", "outsider") and expected not in (OK, T_PULL, T_ALL):
            # Refused: exactly as for something that does not exist.
            other = build(cell, method, twin)
            if grants:
                assert outcome(other, proto, twin.repo) == got, describe(other)
            else:
                assert fingerprint(other, world, twin, cell.minted) == fingerprint(
                    response, world, twin, cell.minted
                ), f"{role} can tell the private resource exists:\n{describe(response)}\n{describe(other)}"


# -- compliance ----------------------------------------------------------------------------------------------
def fresh_clock(c: Cell) -> tuple[int, str]:
    """An open Critical clock (due in three days) on the live product, over the world's scanned finding: its
    id and vulnerability."""
    from dockyard.compliance.models import FindingClock

    product_id = live_product(c)
    with c.state.sessions.begin() as s:
        finding = s.get(ScanFinding, c.world.finding)
        now = utcnow()
        clock = FindingClock(
            product_id=product_id, revision_id=c.world.revision, finding_id=finding.id, image="server",
            digest=c.world.digest, vuln_id=finding.vuln_id, component=finding.component_key,
            severity="Critical", notified_at=now, notified_via="email", due_at=now + dt.timedelta(hours=72),
        )  # fmt: skip
        existing = s.scalar(
            select(FindingClock).where(
                FindingClock.finding_id == finding.id, FindingClock.product_id == product_id
            )
        )
        if existing is not None:
            return existing.id, existing.vuln_id
        s.add(clock)
        s.flush()
        return clock.id, clock.vuln_id


def fresh_vex(c: Cell) -> int:
    from dockyard.compliance.models import VexStatement

    _, vuln = fresh_clock(c)
    with c.state.sessions.begin() as s:
        product_id = s.get(ProductRevision, c.world.revision).product_id
        row = VexStatement(
            product_id=product_id, vuln_id=vuln, status="fixed", impact_statement="", submitted_by="cell"
        )
        s.add(row)
        s.flush()
        return row.id


@builds("GET /api/v1" + STORE_PRODUCT + "/compliance")
def product_compliance_api(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/products/{t.org}/{t.slug}/compliance")


@builds("GET /api/v1" + STORE_PRODUCT + "/vex")
def openvex_api(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/products/{t.org}/{t.slug}/vex")


@builds("POST /api/v1" + STORE_PRODUCT + "/vex")
def file_vex_api(c: Cell, m: str, t: Target) -> httpx.Response:
    _, vuln = fresh_clock(c)
    body = {"vulnerability": vuln, "status": "fixed"}
    return c.api(m, f"/api/v1/products/{t.org}/{t.slug}/vex", json=body)


@builds("POST /api/v1/compliance/vex/{vex_id}/decision")
def decide_vex_api(c: Cell, m: str, t: Target) -> httpx.Response:
    vex_id = fresh_vex(c) if t.slug == c.world.slug else t.revision
    return c.api(m, f"/api/v1/compliance/vex/{vex_id}/decision", json={"accept": False, "reason": "no"})


@builds("POST /api/v1/compliance/clocks/{clock_id}/extension")
def extend_clock_api(c: Cell, m: str, t: Target) -> httpx.Response:
    clock_id = fresh_clock(c)[0] if t.slug == c.world.slug else t.revision
    until = (utcnow() + dt.timedelta(days=30)).isoformat()
    return c.api(m, f"/api/v1/compliance/clocks/{clock_id}/extension", json={"until": until, "reason": "why"})


@builds("GET /api/v1/compliance")
def compliance_overview_api(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/compliance")


@builds("GET /ui/compliance")
def compliance_overview_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/compliance")


@builds("GET " + PRODUCT_PAGE + "/compliance")
def product_compliance_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/orgs/{t.org}/products/{t.slug}/compliance")


@builds("POST " + PRODUCT_PAGE + "/compliance/vex")
def file_vex_page(c: Cell, m: str, t: Target) -> httpx.Response:
    _, vuln = fresh_clock(c)
    data = {"vulnerability": vuln, "status": "fixed"}
    return c.page(m, f"/ui/orgs/{t.org}/products/{t.slug}/compliance/vex", data=data)


@builds("POST /ui/compliance/vex/{vex_id:int}/decision")
def decide_vex_page(c: Cell, m: str, t: Target) -> httpx.Response:
    vex_id = fresh_vex(c) if t.slug == c.world.slug else t.revision
    return c.page(m, f"/ui/compliance/vex/{vex_id}/decision", data={"decision": "reject", "reason": "no"})


@builds("POST /ui/compliance/clocks/{clock_id:int}/extension")
def extend_clock_page(c: Cell, m: str, t: Target) -> httpx.Response:
    clock_id = fresh_clock(c)[0] if t.slug == c.world.slug else t.revision
    until = (utcnow() + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    return c.page(m, f"/ui/compliance/clocks/{clock_id}/extension", data={"until": until, "reason": "why"})


# -- notifications -----------------------------------------------------------------------------------------
@builds("GET /api/v1/me/notifications")
def notifications_api(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/me/notifications")


@builds("PUT /api/v1/me/notifications")
def set_notifications_api(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/me/notifications", json={"daily_digest": False})


@builds("GET /api/v1/me/watches")
def watches_api(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, "/api/v1/me/watches")


@builds("PUT /api/v1/repositories/{name:path}/watch")
def watch_api(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/repositories/{t.repo}/watch")


@builds("DELETE /api/v1/repositories/{name:path}/watch")
def unwatch_api(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.api(m, f"/api/v1/repositories/{t.repo}/watch")


@builds("GET /ui/account/notifications")
def notifications_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/account/notifications")


@builds("POST /ui/account/notifications")
def save_notifications_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, "/ui/account/notifications", data={"critical_now": "on"})


def own_entitlement(c: Cell, t: Target) -> int:
    """An entitlement of the caller's own (the anonymous caller and the robot: the owner's) to the world's
    product, or the twin's missing id."""
    from dockyard.entitlements.models import Entitlement

    if t.revision != c.world.revision:
        return t.revision
    user = c.world.users.get(c.role, c.world.users["owner"])
    with c.state.sessions.begin() as s:
        user_id = s.scalar(select(User.id).where(User.username == user))
        product_id = s.get(ProductRevision, c.world.revision).product_id
        row = Entitlement(user_id=user_id, product_id=product_id, tier="Community")
        s.add(row)
        s.flush()
        c.minted.append(str(row.id))
        return row.id


@builds("POST /ui/account/notifications/entitlements/{entitlement_id:int}")
def security_mail_page(c: Cell, m: str, t: Target) -> httpx.Response:
    url = f"/ui/account/notifications/entitlements/{own_entitlement(c, t)}"
    return c.page(m, url, data={"notify_security": "off"})


@builds("POST " + REPO_PAGE + "/-/watch")
def watch_page(c: Cell, m: str, t: Target) -> httpx.Response:
    return c.page(m, f"/ui/repositories/{t.repo}/-/watch", data={"action": "watch"})
