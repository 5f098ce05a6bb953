"""CVSS scores recomputed from vectors, the version preference, and the severity classes."""

from __future__ import annotations

import pytest

from dockyard.scanning import severity
from dockyard.scanning.severity import Score, Severity, best_score, classify, score_vector, sla_hours


@pytest.mark.parametrize(
    ("kind", "vector", "score", "version"),
    [
        # NVD's classic 9.8 (network, no privileges, full impact).
        ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8, "v3"),
        # CVE-2023-4911 (glibc "Looney Tunables"), 7.8 at NVD.
        ("CVSS_V3", "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8, "v3"),
        # A changed scope: CVE-2018-16487 (lodash): 5.7 by the formula, though nodejs WG's record says 7.0.
        ("CVSS_V3", "CVSS:3.0/AV:L/AC:L/PR:N/UI:N/S:C/C:L/I:L/A:N", 5.7, "v3"),
        ("CVSS_V3", "CVSS:3.0/AV:L/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:L", 1.8, "v3"),
        ("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P", 7.5, "v2"),
        ("CVSS_V2", "AV:N/AC:M/Au:N/C:N/I:P/A:N", 4.3, "v2"),
        ("CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3, "v4"),
        ("CVSS_V4", "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 8.5, "v4"),
        (None, "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9, "v3"),  # the version is in the vector
    ],
)
def test_scores_are_computed_from_the_vector(
    kind: str | None, vector: str, score: float, version: str
) -> None:
    result = score_vector(kind, vector)
    assert result == Score(score, vector, version)


@pytest.mark.parametrize(
    ("kind", "vector"),
    [
        ("CVSS_V3", "CVSS:3.1/AV:N"),
        ("CVSS_V3", "garbage"),
        ("Ubuntu", "high"),
        ("CVSS_V2", ""),
        (None, "7.5"),
    ],
)
def test_invalid_or_non_cvss_vectors_score_nothing(kind: str | None, vector: str) -> None:
    assert score_vector(kind, vector) is None


def test_v3_is_preferred_then_v4_then_v2() -> None:
    v2 = {"type": "CVSS_V2", "vector": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}  # 7.5
    v3 = {"type": "CVSS_V3", "vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:H"}  # 5.9
    v4 = {
        "type": "CVSS_V4",
        "vector": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
    }  # 9.3
    assert best_score([v2, v4, v3]).version == "v3"
    assert best_score([v2, v4]).version == "v4"
    assert best_score([v2]).score == 7.5
    assert best_score([{"type": "Ubuntu", "vector": "medium"}]) is None
    assert best_score([]) is None


def test_within_one_version_the_higher_score_wins() -> None:
    low = {"type": "CVSS_V3", "vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:H"}  # 5.9
    high = {"type": "CVSS_V3", "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}  # 9.8
    assert best_score([low, high]).score == 9.8


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        (None, Severity.UNSCORED),
        (0.0, Severity.UNSCORED),  # CVSS "None"
        (0.1, Severity.MINOR),
        (3.9, Severity.MINOR),
        (4.0, Severity.MAJOR),
        (6.9, Severity.MAJOR),
        (7.0, Severity.CRITICAL),
        (10.0, Severity.CRITICAL),
    ],
)
def test_classification_boundaries(score: float | None, severity: Severity) -> None:
    assert classify(score) is severity


def test_classify_rejects_out_of_range_scores() -> None:
    with pytest.raises(ValueError):
        classify(10.1)
    with pytest.raises(ValueError):
        classify(-1)


def test_sla_hours() -> None:
    assert sla_hours(Severity.CRITICAL) == 72
    assert sla_hours(Severity.MAJOR) == 7 * 24
    assert sla_hours(Severity.MINOR) is None
    assert sla_hours(Severity.UNSCORED) is None


def test_severity_values_are_the_report_class_names() -> None:
    assert [s.value for s in Severity] == ["Critical", "Major", "Minor", "Unscored"]
    assert Score(9.8, "x", "v3").severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("source", "vector", "lender", "label"),
    [
        ("osv:Debian", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", None, "debian v3.1"),
        ("osv:PyPI", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", None, "pypa v3.0"),
        ("ghsa", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", None, "ghsa v4.0"),
        ("osv:GitHub", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "GHSA-x", "ghsa v3.1"),
        ("npm-legacy", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", None, "nodejs-security-wg v3.0"),
        ("alpine-secdb", None, None, "alpine"),
        # osv.dev's conversion of a CVE record for several distributions: NVD's vector, no one distro's.
        ("osv:Alpine+Debian", "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:N/I:N/A:H", None, "osv.dev v3.1"),
        ("nvd", "AV:N/AC:L/Au:N/C:P/I:P/A:P", "NVD-CVE-2005-1 (Primary: nvd@nist.gov)", "nvd (primary) v2.0"),
        (
            "nvd",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "NVD-CVE-2024-1 (Secondary: cna@example.org)",
            "nvd (secondary: cna@example.org) v3.1",
        ),
        (None, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "GONE-1", "unknown v3.1"),
    ],
)
def test_source_labels_name_the_feed_the_nvd_metric_and_the_cvss_version(
    source: str | None, vector: str | None, lender: str | None, label: str
) -> None:
    assert severity.source_label(source, vector, lender) == label


def test_lender_record_is_the_id_of_the_label() -> None:
    assert severity.lender_record("NVD-CVE-2024-1 (Primary: nvd@nist.gov)") == "NVD-CVE-2024-1"
    assert severity.lender_record("GHSA-aaaa-bbbb-cccc") == "GHSA-aaaa-bbbb-cccc"
