"""Blob delivery: signed URLs that blob GETs redirect to (``urls``), the server answering them (``server``).

Kept out of ``storage/`` (blobs and drivers, no HTTP) and ``registry/`` (the protocol's access checks): the
registry signs a URL, this server checks it with nothing but the secret and sends the file.
"""
