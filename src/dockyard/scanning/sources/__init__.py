"""Images to scan, named the way skopeo names them.

``oci:DIR[:REF]``, ``oci-archive:FILE[:REF]``, ``docker-archive:FILE[:NAME:TAG|:@INDEX]`` and
``docker://HOST/NAME[:TAG|@DIGEST]``. ``open_image`` yields one ``ImageSource`` per platform (an index or
manifest list yields them all); layer readers and downloads live until the ``with`` block ends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.scanning.sources.local import DirFiles, open_docker_archive, open_oci_layout, open_tar
from dockyard.scanning.sources.model import ImageSource, LayerRef, SourceError

# The registry client (httpx, about 60 ms to import) only for docker:// references.
if TYPE_CHECKING:
    import httpx

__all__ = ["ImageSource", "LayerRef", "SourceError", "open_image"]

TRANSPORTS = ("oci", "oci-archive", "docker-archive", "docker")


def _split_path(rest: str) -> tuple[str, str | None]:
    """``PATH[:REF]`` split at the first colon, as skopeo does on Unix."""
    path, sep, ref = rest.partition(":")
    return path, (ref if sep and ref else None)


@contextmanager
def open_image(
    ref: str,
    *,
    creds: str | None = None,
    tls_verify: bool = True,
    environ: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Iterator[list[ImageSource]]:
    """Open the image ``ref`` names; raise SourceError when it cannot be found, read or authorised.

    ``environ`` supplies the variables that locate registry auth files (REGISTRY_AUTH_FILE, DOCKER_CONFIG,
    XDG_RUNTIME_DIR, HOME) and defaults to the process environment; ``transport`` replaces the network
    (tests)."""
    transport_name, sep, rest = ref.partition(":")
    if not sep or transport_name not in TRANSPORTS:
        raise SourceError(f"{ref!r}: expected one of {', '.join(t + ':' for t in TRANSPORTS)}")
    if environ is None:
        environ = os.environ
    with tempfile.TemporaryDirectory(prefix="dockyard-source-") as tmp:
        tmpdir = Path(tmp)
        if transport_name == "docker":
            from dockyard.scanning.sources.registry import make_client, open_registry

            with make_client(tls_verify, transport) as client:
                yield open_registry(
                    rest, creds=creds, tls_verify=tls_verify, environ=environ, tmpdir=tmpdir, client=client
                )
            return
        path, name = _split_path(rest)
        if not path:
            raise SourceError(f"{ref!r}: no path")
        where = f"{transport_name}:{path}"
        if transport_name == "oci":
            root = Path(path)
            if not root.is_dir():
                raise SourceError(f"{where}: no such directory")
            yield open_oci_layout(DirFiles(root, where), name)
        elif transport_name == "oci-archive":
            yield open_oci_layout(open_tar(Path(path), where, tmpdir), name)
        else:
            yield open_docker_archive(open_tar(Path(path), where, tmpdir), name)
