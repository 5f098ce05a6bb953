"""The Java archive detector on archives the JDK's jar tool really wrote, and on hostile zips."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from tests.support.langfixtures import JavaArchives, java_archives, layer_of, walk_layer

from dockyard.scanning.detectors import java
from dockyard.scanning.detectors.base import Detector
from dockyard.scanning.detectors.java import (
    JavaArchiveDetector,
    coordinates_from_manifest,
    parse_manifest,
    parse_properties,
)
from dockyard.scanning.types import UnsafeInput

DIGEST = "sha256:" + "4" * 64
DEBIAN_COMMONS_IO = Path("/usr/share/java/commons-io.jar")


@pytest.fixture(scope="session")
def archives(tmp_path_factory: pytest.TempPathFactory) -> JavaArchives:
    return java_archives(tmp_path_factory.mktemp("java"))


def _parse(name: str, data: bytes):
    return JavaArchiveDetector().parse(name, io.BytesIO(data), len(data), DIGEST)


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _pom(group: str, artifact: str, version: str) -> dict[str, bytes]:
    text = f"groupId={group}\nartifactId={artifact}\nversion={version}\n".encode()
    return {f"META-INF/maven/{group}/{artifact}/pom.properties": text}


def test_detector_satisfies_the_interface() -> None:
    assert isinstance(JavaArchiveDetector(), Detector)


def test_real_archives_in_a_layer(archives: JavaArchives, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for archive in (archives.app_jar, archives.war, archives.manifest_only):
        (tree / archive.name).write_bytes(archive.read_bytes())
    walked = walk_layer(JavaArchiveDetector(), layer_of(tree, tmp_path / "layer.tar", "opt/app"), DIGEST)
    found = {(c.path, c.name, c.version) for c in walked.components}
    app, war, legacy = "opt/app/app-1.0.0.jar", "opt/app/shop.war", "opt/app/legacy-util-0.9.jar"
    assert found == {
        (app, "com.example:app", "1.0.0"),
        (f"{app}/lib/inner-2.1.jar", "org.example:inner", "2.1"),
        (legacy, "net.legacy:legacy-util", "0.9"),  # from MANIFEST.MF: it has no pom.properties
        # The war has no coordinates of its own; its libraries do, one and two levels down.
        (f"{war}/WEB-INF/lib/app-1.0.0.jar", "com.example:app", "1.0.0"),
        (f"{war}/WEB-INF/lib/app-1.0.0.jar/lib/inner-2.1.jar", "org.example:inner", "2.1"),
        (f"{war}/WEB-INF/lib/legacy-util-0.9.jar", "net.legacy:legacy-util", "0.9"),
    }
    app_component = next(c for c in walked.components if c.name == "com.example:app")
    assert app_component.purl == "pkg:maven/com.example/app@1.0.0"
    assert app_component.ecosystem == "Maven"
    assert walked.warnings == []


@pytest.mark.skipif(not DEBIAN_COMMONS_IO.exists(), reason="Debian's libcommons-io-java is not installed")
def test_a_jar_built_by_maven() -> None:
    result = _parse("usr/share/java/commons-io.jar", DEBIAN_COMMONS_IO.read_bytes())
    assert [(c.name, c.version) for c in result.components] == [("commons-io:commons-io", "2.11.0")]


def test_depth_is_bounded() -> None:
    data = _zip(_pom("g", "level4", "4"))
    for level in (3, 2, 1, 0):
        data = _zip({**_pom("g", f"level{level}", str(level)), f"lib/l{level + 1}.jar": data})
    names = {c.name for c in _parse("top.jar", data).components}
    assert names == {"g:level0", "g:level1", "g:level2", "g:level3"}  # level 4 is past MAX_DEPTH


def test_manifest_is_a_fallback_only() -> None:
    manifest = b"Manifest-Version: 1.0\r\nImplementation-Title: other\r\nImplementation-Version: 5\r\n" + (
        b"Implementation-Vendor-Id: org.other\r\n"
    )
    data = _zip({"META-INF/MANIFEST.MF": manifest, **_pom("g", "a", "1")})
    assert [c.name for c in _parse("a.jar", data).components] == ["g:a"]


def test_zip_bomb_entry_is_refused() -> None:
    bomb = _zip({**_pom("g", "a", "1"), "lib/bomb.jar": b"\0" * (20 << 20)})
    with pytest.raises(UnsafeInput):
        _parse("bomb.jar", bomb)


def test_total_inflation_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    inner = _zip({**_pom("g", "inner", "1"), "blob": bytes(range(256)) * 4000}, zipfile.ZIP_STORED)
    outer = _zip({f"lib/{i}.jar": inner for i in range(5)}, zipfile.ZIP_STORED)
    monkeypatch.setattr(java, "MAX_TOTAL_INFLATED", 3 * len(inner))
    with pytest.raises(UnsafeInput):
        JavaArchiveDetector().parse("many.jar", io.BytesIO(outer), len(outer), DIGEST)


def test_corrupt_archives_are_warnings() -> None:
    result = _parse("broken.jar", b"PK\x03\x04 not really a zip")
    assert result.components == [] and "not a readable zip" in result.warnings[0]
    good_inner = _zip(_pom("g", "ok", "1"))
    outer = _zip({"lib/bad.jar": b"garbage", "lib/ok.jar": good_inner})
    result = _parse("outer.jar", outer)
    assert [c.name for c in result.components] == ["g:ok"]
    assert any("lib/bad.jar" in w for w in result.warnings)


def test_wants() -> None:
    detector = JavaArchiveDetector()
    for path in ("app.jar", "srv/ROOT.WAR", "x/app.ear", "var/jenkins/plugins/git.hpi", "p.jpi"):
        assert detector.wants(path, 0o644, 1000), path
    assert not detector.wants("app.jar.sha1", 0o644, 10)
    assert not detector.wants("usr/share/doc/jar", 0o644, 10)


def test_properties_and_manifest_parsing() -> None:
    props = parse_properties(
        "# comment\n! other comment\ngroupId = org.x\n"
        "artifactId:long\\\n    -name\n"  # a continued line
        "version 1.0\\u002e1\nempty=\n"
    )
    assert props == {"groupId": "org.x", "artifactId": "long-name", "version": "1.0.1", "empty": ""}
    attrs = parse_manifest(
        "Manifest-Version: 1.0\n"
        "Bundle-SymbolicName: com.fasterxml.jackson.core.jackson-data\n bind;singleton:=true\n"
        "Bundle-Version: 2.13.0\nImplementation-Title: jackson-databind\n"
        "\nName: x/Y.class\nSHA-256-Digest: z\n"  # per-entry sections follow the first blank line
    )
    assert attrs["Bundle-SymbolicName"] == "com.fasterxml.jackson.core.jackson-databind;singleton:=true"
    assert "SHA-256-Digest" not in attrs
    assert coordinates_from_manifest(attrs) == ("com.fasterxml.jackson.core", "jackson-databind", "2.13.0")
    # A human-readable title is not an artifact id.
    assert (
        coordinates_from_manifest(
            {
                "Implementation-Title": "Apache Commons IO",
                "Implementation-Vendor-Id": "x",
                "Implementation-Version": "1",
            }
        )
        is None
    )
