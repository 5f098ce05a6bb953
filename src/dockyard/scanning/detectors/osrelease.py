"""Which distribution an image is: /etc/os-release, with debian_version, alpine-release and redhat-release
as fallbacks for images that lack it.

These files are small text files the indexer records for every layer (the surviving copies decide, after
whiteouts), so this module is plain functions over their texts rather than a Detector.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from dockyard.scanning.types import OSInfo

OS_RELEASE = ("etc/os-release", "usr/lib/os-release")  # in order of precedence, as systemd reads them
OS_FILES = (*OS_RELEASE, "etc/debian_version", "etc/alpine-release", "etc/redhat-release")
MAX_OS_FILE = 64 * 1024  # real ones are a few hundred bytes

_REDHAT_RELEASE = re.compile(r"^\s*(?P<name>[^\n]{1,100}?)\s+release\s+(?P<version>\d+(?:\.\d+){0,3})")
_REDHAT_NAMES = (
    ("red hat enterprise linux", "rhel"),
    ("rocky linux", "rocky"),
    ("almalinux", "almalinux"),
    ("centos", "centos"),
    ("fedora", "fedora"),
    ("oracle linux", "ol"),
)


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines (os-release(5)): quotes removed, backslash escapes inside double quotes undone."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = re.sub(r"\\(.)", r"\1", value)
        fields[key.strip()] = value
    return fields


def os_release_fields(files: Mapping[str, str]) -> dict[str, str]:
    """The fields of the os-release file that wins (etc/ before usr/lib/), or {}."""
    for path in OS_RELEASE:
        if path in files:
            return parse_os_release(files[path])
    return {}


def _debian_major(text: str) -> str:
    """``12.8`` -> ``12``; testing/unstable write ``trixie/sid``, which is no version."""
    first = text.strip().split(".")[0]
    return first if first.isdigit() else ""


def detect_os(files: Mapping[str, str]) -> OSInfo | None:
    """The image's OS from the surviving os files (path -> text), or None if nothing says."""
    fields = os_release_fields(files)
    os_id = fields.get("ID", "").strip().lower()
    if os_id:
        version = fields.get("VERSION_ID", "").strip()
        if not version and os_id == "debian" and "etc/debian_version" in files:
            version = _debian_major(files["etc/debian_version"])
        if not version and os_id == "alpine" and "etc/alpine-release" in files:
            version = files["etc/alpine-release"].strip()
        return OSInfo(
            id=os_id,
            version_id=version,
            pretty_name=fields.get("PRETTY_NAME", ""),
            codename=fields.get("VERSION_CODENAME", ""),
        )
    if "etc/alpine-release" in files:
        version = files["etc/alpine-release"].strip()
        return OSInfo("alpine", version, pretty_name=f"Alpine Linux v{version}")
    if "etc/debian_version" in files:
        text = files["etc/debian_version"].strip()
        major = _debian_major(text)
        codename = "" if major else text.split("/")[0]
        return OSInfo("debian", major, pretty_name=f"Debian GNU/Linux {text}", codename=codename)
    if "etc/redhat-release" in files:
        match = _REDHAT_RELEASE.match(files["etc/redhat-release"])
        if match:
            name = match.group("name").lower()
            os_id = next((i for prefix, i in _REDHAT_NAMES if name.startswith(prefix)), "")
            if os_id:
                return OSInfo(os_id, match.group("version"), pretty_name=files["etc/redhat-release"].strip())
    return None
