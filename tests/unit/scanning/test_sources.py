"""Image sources against images real tools wrote: umoci layouts, tars of them, skopeo's docker-archive, a
hand-written ``docker save`` tarball (both formats), and a real dockyard registry that skopeo pushed to."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.langfixtures import (
    add_index,
    docker_save_legacy,
    gnu_tar,
    layer_tar,
    need,
    run,
    tar_members,
    umoci_layout,
    write_tree,
)

from dockyard.scanning.sources import ImageSource, SourceError, open_image
from dockyard.scanning.sources.registry import parse_docker_ref


@dataclass
class Layouts:
    root: Path
    layout: Path  # tags v1 (two layers) and v2 (one layer)
    single: Path  # one image, no ref needed
    multi: Path  # tags amd64, arm64 and the index "multi" over both

    def descriptor(self, layout: Path, ref: str) -> dict:
        index = json.loads((layout / "index.json").read_text())
        return next(
            d for d in index["manifests"] if d["annotations"]["org.opencontainers.image.ref.name"] == ref
        )

    def blob(self, layout: Path, digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


@pytest.fixture(scope="session")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> Layouts:
    root = tmp_path_factory.mktemp("sources")
    base = gnu_tar(
        root / "base.tar", write_tree(root / "base", {"etc/os-release": "ID=test\nVERSION_ID=1\n"})
    )
    app = gnu_tar(root / "app.tar", write_tree(root / "app", {"srv/app/main.py": "print('hi')\n"}))
    arm = gnu_tar(root / "arm.tar", write_tree(root / "arm", {"etc/arch": "arm64\n"}))
    layout, single, multi = root / "layout", root / "single", root / "multi"
    umoci_layout(layout, "v1", [base, app])
    umoci_layout(layout, "v2", [base])
    umoci_layout(single, "only", [app])
    umoci_layout(multi, "amd64", [base])
    umoci_layout(multi, "arm64", [base, arm], architecture="arm64")
    add_index(
        multi,
        "multi",
        [
            ("amd64", {"os": "linux", "architecture": "amd64"}),
            ("arm64", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        ],
    )
    return Layouts(root, layout, single, multi)


def _read(layer) -> bytes:
    with layer.open() as f:
        return f.read()


def _check_against_layout(image: ImageSource, layouts: Layouts, layout: Path, ref: str) -> None:
    """The source reports exactly what the layout holds, and every layer reads back to its digest."""
    manifest_digest = layouts.descriptor(layout, ref)["digest"]
    manifest = json.loads(layouts.blob(layout, manifest_digest))
    assert image.manifest_digest == manifest_digest
    assert image.config == json.loads(layouts.blob(layout, manifest["config"]["digest"]))
    assert [(la.digest, la.media_type, la.size) for la in image.layers] == [
        (d["digest"], d["mediaType"], d["size"]) for d in manifest["layers"]
    ]
    for layer in image.layers:
        data = _read(layer)
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer.digest


def test_oci_layout_by_ref(layouts: Layouts) -> None:
    with open_image(f"oci:{layouts.layout}:v1") as images:
        (image,) = images
        _check_against_layout(image, layouts, layouts.layout, "v1")
        assert image.platform == "linux/amd64"
        assert len(image.layers) == 2
        assert "./etc/os-release" in tar_members(gzip.decompress(_read(image.layers[0])))
        assert "./srv/app/main.py" in tar_members(gzip.decompress(_read(image.layers[1])))


def test_oci_layout_by_digest_and_without_ref(layouts: Layouts) -> None:
    digest = layouts.descriptor(layouts.layout, "v2")["digest"]
    for ref in (f"oci:{layouts.layout}:{digest}", f"oci:{layouts.layout}:@{digest}"):
        with open_image(ref) as (image,):
            assert image.manifest_digest == digest
    with open_image(f"oci:{layouts.single}") as (image,):
        _check_against_layout(image, layouts, layouts.single, "only")


def test_oci_layout_errors(layouts: Layouts, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"name one of: v1, v2"), open_image(f"oci:{layouts.layout}"):
        pass
    with pytest.raises(SourceError, match=r"no image named 'v9'"), open_image(f"oci:{layouts.layout}:v9"):
        pass
    with pytest.raises(SourceError, match="no such directory"), open_image(f"oci:{tmp_path}/missing:v1"):
        pass
    with pytest.raises(SourceError, match="not an OCI image layout"), open_image(f"oci:{tmp_path}"):
        pass
    with pytest.raises(SourceError, match="expected one of"), open_image(f"ftp:{tmp_path}"):
        pass


def test_multi_platform_index(layouts: Layouts) -> None:
    with open_image(f"oci:{layouts.multi}:multi") as images:
        assert [i.platform for i in images] == ["linux/amd64", "linux/arm64/v8"]  # no attestation entry
        _check_against_layout(images[0], layouts, layouts.multi, "amd64")
        _check_against_layout(images[1], layouts, layouts.multi, "arm64")
        assert images[1].config["architecture"] == "arm64"


def test_tampered_layout_blobs(layouts: Layouts, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(layouts.layout, copy)
    manifest = json.loads(layouts.blob(copy, layouts.descriptor(copy, "v1")["digest"]))
    layer_path = copy / "blobs" / "sha256" / manifest["layers"][1]["digest"][7:]
    data = bytearray(layer_path.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes: only reading to the end can tell
    layer_path.write_bytes(bytes(data))
    with open_image(f"oci:{copy}:v1") as (image,):
        _read(image.layers[0])
        with pytest.raises(SourceError, match="does not match its digest"):
            _read(image.layers[1])
    layer_path.write_bytes(bytes(data[:-1]))
    with pytest.raises(SourceError, match="the manifest says"), open_image(f"oci:{copy}:v1"):
        pass
    config_path = copy / "blobs" / "sha256" / manifest["config"]["digest"][7:]
    config_path.write_bytes(config_path.read_bytes().replace(b"amd64", b"arm64"))
    with pytest.raises(SourceError, match="does not match its digest"), open_image(f"oci:{copy}:v1"):
        pass


@pytest.mark.parametrize("compress", [False, True])
def test_oci_archive(layouts: Layouts, tmp_path: Path, compress: bool) -> None:
    archive = tmp_path / "image.tar"
    run([need("tar"), "--create", "--file", str(archive), "-C", str(layouts.layout), "."])
    if compress:
        archive = archive.with_suffix(".tar.gz")
        archive.write_bytes(gzip.compress((tmp_path / "image.tar").read_bytes(), compresslevel=1))
    with open_image(f"oci-archive:{archive}:v1") as (image,):
        _check_against_layout(image, layouts, layouts.layout, "v1")
    with pytest.raises(SourceError, match="no such file"), open_image(f"oci-archive:{tmp_path}/nope.tar"):
        pass


def test_oci_archive_is_not_extracted(tmp_path: Path) -> None:
    # A member that would climb out if extracted is only ever looked up by name.
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        for name, data in (
            ("../../escape", b"x"),
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", b'{"schemaVersion":2,"manifests":[]}'),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with pytest.raises(SourceError, match="holds no images"), open_image(f"oci-archive:{archive}"):
        pass
    assert not (tmp_path.parent.parent / "escape").exists()


def test_docker_archive_written_by_skopeo(layouts: Layouts, tmp_path: Path) -> None:
    archive = tmp_path / "docker.tar"
    run(
        [need("skopeo"), "copy", "-q", f"oci:{layouts.layout}:v1", f"docker-archive:{archive}:example/app:v1"]
    )
    for ref in (
        f"docker-archive:{archive}",
        f"docker-archive:{archive}:example/app:v1",
        f"docker-archive:{archive}:@0",
    ):
        with open_image(ref) as (image,):
            # Layers are stored uncompressed, so each layer's digest is its diff ID.
            assert [la.digest for la in image.layers] == image.config["rootfs"]["diff_ids"]
            assert all(la.media_type == "application/vnd.oci.image.layer.v1.tar" for la in image.layers)
            assert "./srv/app/main.py" in tar_members(_read(image.layers[1]))
            assert image.platform == "linux/amd64"
            assert image.manifest_digest.startswith("sha256:")
    with (
        pytest.raises(SourceError, match="no image tagged"),
        open_image(f"docker-archive:{archive}:other:v1"),
    ):
        pass


def test_docker_archive_legacy_format(tmp_path: Path) -> None:
    base = layer_tar({"etc/os-release": b"ID=alpine\n"})
    top = layer_tar({"app/x": b"x"})
    gz = gzip.compress(layer_tar({"app/y": b"y"}))  # docker load accepts compressed layers too
    archive = tmp_path / "save.tar"
    docker_save_legacy(archive, [("alpine:3.19", [base]), ("myapp:1", [base, top, gz])])
    with pytest.raises(SourceError, match="holds 2 images"), open_image(f"docker-archive:{archive}"):
        pass
    with open_image(f"docker-archive:{archive}:docker.io/library/myapp:1") as (image,):
        assert image.platform == "linux/arm64"
        digests = [la.digest for la in image.layers]
        assert digests[:2] == image.config["rootfs"]["diff_ids"][:2]
        assert digests[2] == "sha256:" + hashlib.sha256(gz).hexdigest()  # a compressed blob's own digest
        assert [la.media_type for la in image.layers][
            2
        ] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
        assert _read(image.layers[0]) == base  # read through the symlink to the first copy
        assert _read(image.layers[2]) == gz
    with open_image(f"docker-archive:{archive}:@0") as (image,):
        assert [la.digest for la in image.layers] == image.config["rootfs"]["diff_ids"]


def test_docker_archive_with_oci_layout(layouts: Layouts, tmp_path: Path) -> None:
    """Docker 25+ writes an OCI layout and a manifest.json pointing into its blobs."""
    tree = tmp_path / "save"
    shutil.copytree(layouts.layout, tree)
    descriptor = layouts.descriptor(tree, "v1")
    manifest = json.loads(layouts.blob(tree, descriptor["digest"]))
    index = {
        "schemaVersion": 2,
        "manifests": [
            descriptor
            | {
                "annotations": {
                    "io.containerd.image.name": "docker.io/library/app:v1",
                    "org.opencontainers.image.ref.name": "v1",
                }
            }
        ],
    }
    (tree / "index.json").write_text(json.dumps(index))
    blob = lambda d: "blobs/sha256/" + d[7:]  # noqa: E731
    entry = {
        "Config": blob(manifest["config"]["digest"]),
        "RepoTags": ["app:v1"],
        "Layers": [blob(d["digest"]) for d in manifest["layers"]],
    }
    (tree / "manifest.json").write_text(json.dumps([entry]))
    archive = tmp_path / "save.tar"
    run([need("tar"), "--create", "--file", str(archive), "-C", str(tree), "."])
    with open_image(f"docker-archive:{archive}:app:v1") as (image,):
        _check_against_layout(image, layouts, layouts.layout, "v1")


# -- docker:// against a real dockyard registry


@pytest.fixture
def pushed(live_server, layouts: Layouts) -> dict[str, str]:
    """v1 and the multi-platform index pushed by skopeo; returns tag -> manifest digest."""
    skopeo = need("skopeo")
    creds = f"admin:{live_server.admin_password}"
    for src, dest in (
        (f"oci:{layouts.layout}:v1", "admin/img:v1"),
        (f"oci:{layouts.multi}:multi", "admin/multi:1"),
    ):
        run(
            [
                skopeo,
                "copy",
                "-q",
                "--all",
                "--dest-tls-verify=false",
                "--dest-creds",
                creds,
                src,
                f"docker://{live_server.host}/{dest}",
            ]
        )
    return {
        "v1": layouts.descriptor(layouts.layout, "v1")["digest"],
        "multi": layouts.descriptor(layouts.multi, "multi")["digest"],
    }


@pytest.mark.e2e
def test_registry_pull_with_creds(live_server, layouts: Layouts, pushed: dict[str, str]) -> None:
    creds = f"admin:{live_server.admin_password}"
    with open_image(f"docker://{live_server.host}/admin/img:v1", creds=creds, environ={}) as (image,):
        _check_against_layout(image, layouts, layouts.layout, "v1")
        # Opening twice reuses the verified download.
        assert _read(image.layers[0]) == _read(image.layers[0])
    by_digest = f"docker://{live_server.host}/admin/img@{pushed['v1']}"
    with open_image(by_digest, creds=creds, environ={}) as (image,):
        assert image.manifest_digest == pushed["v1"]
    with open_image(f"docker://{live_server.host}/admin/multi:1", creds=creds, environ={}) as images:
        assert [i.platform for i in images] == ["linux/amd64", "linux/arm64/v8"]
        _check_against_layout(images[1], layouts, layouts.multi, "arm64")


class RecordingTransport(httpx.BaseTransport):
    """The real network, with every request the client sends (redirects too) written down."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.e2e
def test_registry_blobs_follow_the_redirect_without_the_token(
    live_server, layouts: Layouts, pushed: dict[str, str]
) -> None:
    """dockyard answers blob GETs with a redirect to its delivery server: the scanner follows it, and the
    registry's bearer token stays with the registry (the signed URL is the credential)."""
    transport = RecordingTransport()
    creds = f"admin:{live_server.admin_password}"
    ref = f"docker://{live_server.host}/admin/img:v1"
    with open_image(ref, creds=creds, environ={}, transport=transport) as (image,):
        _check_against_layout(image, layouts, layouts.layout, "v1")
    delivery_host = live_server.blob_url.split("://", 1)[1]
    delivered = [r for r in transport.requests if r.url.netloc.decode() == delivery_host]
    manifest = json.loads(layouts.blob(layouts.layout, pushed["v1"]))
    wanted = {manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}
    assert {r.url.path.removeprefix("/blobs/") for r in delivered} == wanted
    assert all("authorization" not in r.headers for r in delivered)
    registry_blob_gets = [r for r in transport.requests if "/blobs/" in r.url.path and r not in delivered]
    assert registry_blob_gets and all(
        r.headers["authorization"].startswith("Bearer ") for r in registry_blob_gets
    )


@pytest.mark.e2e
def test_registry_creds_from_an_auth_file(
    live_server, layouts: Layouts, pushed: dict[str, str], tmp_path: Path
) -> None:
    auth = base64.b64encode(f"admin:{live_server.admin_password}".encode()).decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {f"http://{live_server.host}": {"auth": auth}}})
    )
    with open_image(
        f"docker://{live_server.host}/admin/img:v1", environ={"DOCKER_CONFIG": str(tmp_path)}
    ) as (image,):
        assert image.manifest_digest == pushed["v1"]
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {live_server.host: {"auth": auth}}}))
    with open_image(
        f"docker://{live_server.host}/admin/img:v1", environ={"REGISTRY_AUTH_FILE": str(auth_file)}
    ) as (image,):
        assert image.manifest_digest == pushed["v1"]


@pytest.mark.e2e
def test_registry_errors(live_server, pushed: dict[str, str]) -> None:
    ref = f"docker://{live_server.host}/admin/img:v1"
    with (
        pytest.raises(SourceError, match="authentication failed"),
        open_image(ref, creds="admin:wrong", environ={}),
    ):
        pass
    with pytest.raises(SourceError, match="access denied to manifests"), open_image(ref, environ={}):
        pass
    creds = f"admin:{live_server.admin_password}"
    with (
        pytest.raises(SourceError, match="not found"),
        open_image(f"docker://{live_server.host}/admin/img:nope", creds=creds, environ={}),
    ):
        pass
    with pytest.raises(SourceError, match="--creds must be"), open_image(ref, creds="nocolon", environ={}):
        pass


# -- the registry protocol details a real registry does not exercise, over an injected transport


class FakeRegistry:
    """A registry behind a token service, with switches for the failures a client must survive."""

    def __init__(self, scheme: str = "bearer") -> None:
        self.scheme = scheme
        self.config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": []}}
        ).encode()
        self.layer = gzip.compress(layer_tar({"etc/os-release": b"ID=fake\n"}))
        self.served_layer = self.layer
        self.tokens_issued = 0
        self.expire_next = False
        digest = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()  # noqa: E731
        self.manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": digest(self.config),
                    "size": len(self.config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": digest(self.layer),
                        "size": len(self.layer),
                    }
                ],
            }
        ).encode()
        self.blobs = {digest(self.config): lambda: self.config, digest(self.layer): lambda: self.served_layer}

    def handler(self, request: httpx.Request) -> httpx.Response:
        url, auth = request.url, request.headers.get("Authorization", "")
        if url.host == "auth.example":
            if auth != "Basic " + base64.b64encode(b"user:pw").decode():
                return httpx.Response(401)
            assert url.params["scope"] == "repository:team/app:pull" and url.params["service"] == "reg"
            self.tokens_issued += 1
            return httpx.Response(200, json={"token": f"t{self.tokens_issued}"})
        if self.scheme == "bearer":
            ok = auth == f"Bearer t{self.tokens_issued}" and not self.expire_next
            challenge = 'Bearer realm="https://auth.example/token",service="reg"'
        else:
            ok = auth == "Basic " + base64.b64encode(b"user:pw").decode()
            challenge = 'Basic realm="reg"'
        if not ok:
            self.expire_next = False
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        if url.path == "/v2/":
            return httpx.Response(200)
        if url.path == "/v2/team/app/manifests/1.0":
            return httpx.Response(
                200, content=self.manifest, headers={"Content-Type": json.loads(self.manifest)["mediaType"]}
            )
        if url.path.startswith("/v2/team/app/blobs/"):
            blob = self.blobs.get(url.path.rsplit("/", 1)[1])
            return httpx.Response(200, content=blob()) if blob else httpx.Response(404)
        return httpx.Response(404)


def _open_fake(registry: FakeRegistry, **kwargs):
    return open_image(
        "docker://reg.example/team/app:1.0",
        environ={},
        transport=httpx.MockTransport(registry.handler),
        **kwargs,
    )


def test_registry_token_flow_and_renewal() -> None:
    registry = FakeRegistry()
    with _open_fake(registry, creds="user:pw") as (image,):
        assert image.platform == "linux/amd64"
        registry.expire_next = True  # the token expires before the layer download: renew once, go on
        assert _read(image.layers[0]) == registry.layer
    assert registry.tokens_issued == 2


def test_registry_basic_challenge_and_wrong_creds() -> None:
    with _open_fake(FakeRegistry("basic"), creds="user:pw") as (image,):
        assert image.layers[0].size == len(FakeRegistry().layer)
    with (
        pytest.raises(SourceError, match="authentication failed"),
        _open_fake(FakeRegistry(), creds="user:bad"),
    ):
        pass
    with pytest.raises(SourceError, match="requires credentials"), _open_fake(FakeRegistry("basic")):
        pass


def test_registry_layer_is_verified_before_use() -> None:
    registry = FakeRegistry()
    registry.served_layer = registry.layer[:-1] + bytes([registry.layer[-1] ^ 1])
    with (
        _open_fake(registry, creds="user:pw") as (image,),
        pytest.raises(SourceError, match="does not match"),
    ):
        image.layers[0].open()


def test_registry_plain_http_only_where_allowed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            raise httpx.ConnectError("TLS handshake failed", request=request)
        return FakeRegistry("basic").handler(request)

    transport = httpx.MockTransport(handler)
    ref = "docker://reg.example/team/app:1.0"
    with pytest.raises(SourceError, match="over https"), open_image(ref, environ={}, transport=transport):
        pass
    with open_image(ref, environ={}, transport=transport, creds="user:pw", tls_verify=False) as (image,):
        assert image.manifest_digest.startswith("sha256:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("//alpine", ("docker.io", "registry-1.docker.io", "library/alpine", "latest")),
        ("//bitnami/redis:7.2", ("docker.io", "registry-1.docker.io", "bitnami/redis", "7.2")),
        ("//localhost:5000/a/b:c", ("localhost:5000", "localhost:5000", "a/b", "c")),
        ("//ghcr.io/o/r@sha256:" + "a" * 64, ("ghcr.io", "ghcr.io", "o/r", "sha256:" + "a" * 64)),
    ],
)
def test_docker_reference_parsing(text: str, expected: tuple[str, str, str, str]) -> None:
    ref = parse_docker_ref(text)
    assert (ref.registry, ref.api_host, ref.repository, ref.reference) == expected


@pytest.mark.parametrize(
    "text", ["alpine", "//Host/UPPER:tag", "//h.io/a:b@sha256:short", "//h.io/a:bad tag"]
)
def test_bad_docker_references(text: str) -> None:
    with pytest.raises(SourceError):
        parse_docker_ref(text)
