"""A folder's existence probe that also brings the listing asked for next.

s3fs's ``info`` of a path that is no object (a HEAD answered 404) asks
whether it is a folder: a LIST of one key under ``path/``, with ``/`` as the
delimiter. Whoever asks ``info`` of a folder usually lists it next: a
``pyarrow.dataset`` (and pandas or dask through it) asks ``info`` of its
folder, then ``find``s every file below it, whose first request is a LIST of
the same prefix without a delimiter. That is a second round trip, in line,
before the scan can open its first file.

Here the probe is sent as that first page instead (up to 1000 keys, what
the listing would ask), and the page is kept for the listing that follows:
the probe's answer is read from it (a folder has a key under its prefix iff
the page holds one), and the ``find`` takes the page without a request and
goes on from its continuation token. A probe of a folder never listed after
costs one bigger answer (a page of keys instead of one), not a request more.

The probe waits for the HEAD before it: one more round trip in line. When
the path reads as a folder's name (its last part has no extension, as
``bench/ds`` or ``year=2024``), the page is asked for beside the HEAD, so
that both answers arrive in one round trip. If the path is an object after
all, the page was one LIST more, never a longer wait; a path with an
extension (``a.parquet``) is probed only after its HEAD, as before.

Pure functions of a ListObjectsV2 request and answer (botocore's shapes); the
filesystem decides when a probe may be sent this way and keeps the pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_FIRST_PAGE_PARAMETERS = frozenset({"Bucket", "Prefix", "Delimiter"})
"""What a recursive listing's first page names (s3fs's ``find``): a page after it carries a token too."""


def is_folder_probe(request: Mapping[str, Any]) -> bool:
    """Whether ``request`` is s3fs's question "is there a key under this folder?", and nothing more."""
    return (
        request.keys() == {"Bucket", "Prefix", "Delimiter", "MaxKeys"}
        and request["Delimiter"] == "/"
        and request["MaxKeys"] == 1
        and str(request["Prefix"]).endswith("/")
    )


def names_a_folder(head: Mapping[str, Any]) -> bool:
    """Whether ``head`` is a plain HEAD of a key whose last part reads as a folder's name: it has no extension.

    Plain: the bucket and the key, nothing that the page would have to ask
    the same way (a version, a customer key).
    """
    if head.keys() != {"Bucket", "Key"}:
        return False
    name = str(head["Key"]).rstrip("/").rpartition("/")[2]
    return bool(name) and "." not in name


def probe_after(head: Mapping[str, Any]) -> dict[str, Any]:
    """The probe s3fs's ``info`` sends when ``head`` is answered 404: one key under ``key/``, ``/`` as the delimiter."""
    return {"Bucket": head["Bucket"], "Prefix": f"{str(head['Key']).rstrip('/')}/", "Delimiter": "/", "MaxKeys": 1}


def first_page_request(probe: Mapping[str, Any]) -> dict[str, Any]:
    """The request of the first page listing everything under ``probe``'s folder (no delimiter, no page size)."""
    return {"Bucket": probe["Bucket"], "Prefix": probe["Prefix"]}


def is_first_page_request(request: Mapping[str, Any]) -> bool:
    """Whether ``request`` asks the first page of a listing of everything under a prefix (no delimiter)."""
    return request.keys() <= _FIRST_PAGE_PARAMETERS and "Prefix" in request and not request.get("Delimiter")


def page_key(request: Mapping[str, Any]) -> str:
    """Where a first page is kept: its folder as a path (``bucket/folder``), forgotten with what lies below it."""
    return f"{request['Bucket']}/{str(request['Prefix']).rstrip('/')}"


def probe_answer(page: Mapping[str, Any], probe: Mapping[str, Any]) -> dict[str, Any]:
    """What S3 would answer ``probe`` (one key, ``/`` as the delimiter), read from the first page of its folder.

    Keys are listed in order, so the probe's one entry comes from the page's
    first key: the key itself when it lies directly in the folder, else the
    sub-folder it lies in (a common prefix). Whether more entries follow
    (``IsTruncated``) is left out: one page cannot always tell, and s3fs
    reads only the entry.
    """
    prefix = str(probe["Prefix"])
    contents = page.get("Contents") or []
    answer: dict[str, Any] = {
        "Name": page.get("Name", probe["Bucket"]),
        "Prefix": prefix,
        "Delimiter": "/",
        "MaxKeys": 1,
        "KeyCount": 1 if contents else 0,
    }
    if contents:
        first = contents[0]
        below, slash, _ = str(first["Key"])[len(prefix) :].partition("/")
        if slash:
            answer["CommonPrefixes"] = [{"Prefix": f"{prefix}{below}/"}]
        else:
            answer["Contents"] = [dict(first)]
    return answer


def page_copy(page: Mapping[str, Any]) -> dict[str, Any]:
    """A kept page as a new answer: s3fs fills in each entry it is handed (its name, its type)."""
    copied = dict(page)
    for name in ("Contents", "CommonPrefixes"):
        if name in copied:
            copied[name] = [dict(entry) for entry in copied[name]]
    return copied
