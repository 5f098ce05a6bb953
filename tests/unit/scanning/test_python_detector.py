"""The Python detector on distributions pip really installed, fed through a streamed layer tar."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from tests.support.langfixtures import PYPI_PACKAGES, layer_of, pip_site_packages, walk_layer

from dockyard.scanning.detectors.base import Detector
from dockyard.scanning.detectors.python import PythonDetector, normalize_name

SITE = "usr/local/lib/python3.11/site-packages"
DIGEST = "sha256:" + "1" * 64


@pytest.fixture(scope="session")
def site_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pysite")
    return layer_of(pip_site_packages(root), root / "layer.tar", SITE)


def test_detector_satisfies_the_interface() -> None:
    assert isinstance(PythonDetector(), Detector)


def test_finds_the_installed_distributions_with_purls(site_layer: Path) -> None:
    walked = walk_layer(PythonDetector(), site_layer, DIGEST)
    found = {(c.name, c.version) for c in walked.components}
    assert found == set(PYPI_PACKAGES.items())
    by_name = {c.name: c for c in walked.components}
    django = by_name["Django"]
    assert django.purl == "pkg:pypi/django@3.2"
    assert django.ecosystem == "PyPI"
    assert django.path == f"{SITE}/Django-3.2.dist-info/METADATA"
    assert django.layer_digest == DIGEST
    assert by_name["urllib3"].purl == "pkg:pypi/urllib3@1.26.4"
    # Only the METADATA files were asked for, not the thousands of other files in the tree.
    assert sorted(walked.wanted) == sorted(
        [f"{SITE}/Django-3.2.dist-info/METADATA", f"{SITE}/urllib3-1.26.4.dist-info/METADATA"]
    )


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA", True),
        ("opt/app/venv/lib/python3.12/site-packages/attrs-23.1.0.dist-info/METADATA", True),
        ("usr/lib/python3/dist-packages/chardet-5.1.0.egg-info/PKG-INFO", True),
        ("usr/lib/python2.7/dist-packages/argparse-1.2.1.egg-info", True),  # a single-file record
        ("usr/lib/python3/dist-packages/six-1.16.0.dist-info/RECORD", False),
        ("usr/lib/python3/dist-packages/six.py", False),
        ("usr/share/doc/METADATA", False),
    ],
)
def test_wants_only_metadata_records(path: str, wanted: bool) -> None:
    assert PythonDetector().wants(path, 0o644, 100) is wanted


def _parse(path: str, text: bytes):
    return PythonDetector().parse(path, io.BytesIO(text), len(text), DIGEST).components


def test_egg_info_file_and_name_normalisation() -> None:
    record = b"Metadata-Version: 1.1\nName: zope.interface\nVersion: 5.4.0\nSummary: Interfaces\n"
    (component,) = _parse("usr/lib/python3/dist-packages/zope.interface-5.4.0.egg-info", record)
    assert (component.name, component.version) == ("zope.interface", "5.4.0")
    assert component.purl == "pkg:pypi/zope-interface@5.4.0"


def test_only_the_header_block_is_read() -> None:
    # A body that repeats the headers (a README quoting metadata) must not override the real ones.
    record = b"Name: real\nVersion: 1.0\n\nName: fake\nVersion: 9.9\n" + b"x" * 100_000
    (component,) = _parse("x/real-1.0.dist-info/METADATA", record)
    assert (component.name, component.version) == ("real", "1.0")


def test_records_without_name_or_version_are_skipped() -> None:
    assert _parse("x/a.dist-info/METADATA", b"Name: a\n") == []
    assert _parse("x/a.dist-info/METADATA", b"Version: 1\n") == []
    assert _parse("x/a.dist-info/METADATA", b"\xff\xfe garbage") == []


def test_header_reading_is_bounded() -> None:
    # One endless header line: parsing stops at the bound instead of buffering it all.
    record = b"Name: big\nVersion: 1\nDescription: " + b"y" * (3 << 20)
    (component,) = _parse("x/big-1.dist-info/METADATA", record)
    assert component.name == "big"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("Django", "django"), ("zope.interface", "zope-interface"), ("Foo__Bar-.baz", "foo-bar-baz")],
)
def test_pep503_normalisation(raw: str, normal: str) -> None:
    assert normalize_name(raw) == normal
