"""A lean GET: S3Calls that send a GetObject, HeadObject or ListObjectsV2 as one signed HTTP request.

Through botocore, every GET of every object runs the same pipeline again:
parameter checks, endpoint rules, a dozen event hooks, the user-agent string,
signing, and parsing every header of the answer (dates included), about
1 ms of CPU for a 4 KiB read. Nearly all of it is the same for every GET of
one bucket. So botocore stays the source of truth, asked once per bucket:

- where: ``generate_presigned_url`` for a stand-in key gives the endpoint,
  the addressing style and the key's place in the URL;
- as whom: the client's own credentials (refreshed by botocore as they
  expire) and its region, for Signature Version 4 (``sigv4.py``), or no
  signature for an anonymous client.

A listing's answer is parsed into the dict botocore would return
(``listing.py``), and a HEAD's headers by the rules of botocore's model
(``head_answer.py``): s3fs's ``ls``, ``find`` and ``info`` pass here.

What this path cannot do as botocore would (request parameters beyond a
version, range, ``If-Match``, requester pays and SSE-C keys; a configured
signature version other than SigV4; proxies or client certificates from the
client's configuration; access-point ARNs and directory buckets; a bucket
whose requests the endpoint redirects to another region) goes to the
fallback, unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import inspect
import logging
import os
import ssl
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import botocore
from botocore.exceptions import ClientError
from botocore.httpsession import get_cert_path
from s3fs.errors import translate_boto_error

from ..stats import CountingBodyInto, TransferCounter
from .calls import S3Calls
from .head_answer import HeadAnswerRules
from .http1 import Http1Client, Http1Response
from .listing import LISTING_PARAMETERS, listing_query, parsed_listing
from .sigv4 import FrozenCredentials, SigV4Signer, encoded_query

logger = logging.getLogger(__name__)

_STAND_IN_KEY = "fsspec-s3reader-key-stand-in"
_OPERATIONS = {
    "get_object": ("GET", "GetObject"),
    "head_object": ("HEAD", "HeadObject"),
    "list_objects_v2": ("GET", "ListObjectsV2"),
}
_LEAN_PARAMETERS = frozenset(
    {"Bucket", "Key", "VersionId", "Range", "IfMatch", "RequestPayer"}
    | {"SSECustomerAlgorithm", "SSECustomerKey", "SSECustomerKeyMD5"}
)
_CONNECT_TIMEOUT = 30.0
"""Seconds to open a connection (aiohttp's default, which botocore's requests keep)."""
_REGION_ERRORS = frozenset({"PermanentRedirect", "TemporaryRedirect", "AuthorizationHeaderMalformed"})


@dataclass(frozen=True)
class _Bucket:
    """How to reach one bucket, asked of botocore once."""

    origin: str  # scheme://host[:port]
    host: str
    path_prefix: str  # the URL path before the key, percent-encoded
    signer: SigV4Signer | None  # None: unsigned (an anonymous client)
    credentials: Any
    defaults: Mapping[str, Mapping[str, Any]]  # per operation, the filesystem-wide parameters it takes
    head_answer: HeadAnswerRules  # how a HEAD's headers read as botocore's answer

    @property
    def listing_path(self) -> str:
        """The bucket's own path, where its listing is asked for (``/`` when the host names the bucket)."""
        return self.path_prefix.rstrip("/") or "/"


def _ssl_context(client_kwargs: Mapping[str, Any]) -> ssl.SSLContext | bool:
    verify = client_kwargs.get("verify")
    if verify is False or str(client_kwargs.get("endpoint_url") or "").startswith("http://"):
        return False  # no TLS to set up: loading the CA bundle costs ~10 ms per filesystem
    return _verifying_context(get_cert_path(True if verify is None else verify))


@functools.lru_cache(maxsize=8)
def _verifying_context(cafile: str | None) -> ssl.SSLContext:
    """One context per CA bundle, for the process: each filesystem would otherwise load the bundle anew."""
    return ssl.create_default_context(cafile=cafile)


def _behind_a_proxy(scheme: str, host: str) -> bool:
    """Whether the environment sends requests to ``host`` through a proxy (botocore honours it; so must we)."""
    return scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)


def _sse_c_headers(request: Mapping[str, Any]) -> dict[str, str]:
    """The SSE-C headers botocore would send for these parameters."""
    key = request.get("SSECustomerKey")
    if key is None:
        return {}
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return {
        "x-amz-server-side-encryption-customer-algorithm": request.get("SSECustomerAlgorithm", "AES256"),
        "x-amz-server-side-encryption-customer-key": base64.b64encode(raw).decode("ascii"),
        "x-amz-server-side-encryption-customer-key-md5": request.get("SSECustomerKeyMD5")
        or base64.b64encode(hashlib.md5(raw).digest()).decode("ascii"),
    }


class HttpClients:
    """One HTTP client (``http1.py``) per event loop that sends through the lean calls.

    The filesystem's own loop, or the caller's where fsspec is used
    asynchronously (zarr does). Held apart from the calls so that a
    finalizer can close them without keeping the filesystem alive.
    """

    def __init__(self, counter: TransferCounter) -> None:
        self._clients: dict[asyncio.AbstractEventLoop, Http1Client] = {}
        self._counter = counter

    def _count(self, method: str) -> None:
        # A request counts once its head is on the wire: one cancelled before that
        # (a part no longer wanted) never reached the server, and is not counted.
        self._counter.record_request(method)

    def for_running_loop(self, limit: int, ssl_context: Callable[[], ssl.SSLContext | bool]) -> Http1Client:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.closed:
            # No total timeout: each request's wait for its headers and each body's silence are bounded by the
            # transport (read_timeout); a stream that is only long is never cut.
            client = self._clients[loop] = Http1Client(limit, ssl_context(), _CONNECT_TIMEOUT, self._count)
        return client

    def forget(self) -> None:
        """In a forked child: the parent's clients and their loops are not this process's."""
        self._clients.clear()

    def close(self) -> None:
        """Close every client on its own loop, where that loop still runs; callable from any thread."""
        clients = list(self._clients.items())
        self._clients.clear()
        for loop, client in clients:
            if not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(client.close(), loop)


class LeanCalls:
    """:class:`S3Calls` that send GETs and HEADs themselves, and everything else through ``fallback``."""

    def __init__(
        self,
        fallback: S3Calls,
        client_for: Callable[[str], Awaitable[Any]],
        counter: TransferCounter,
        request_defaults: Mapping[str, Any],
        client_kwargs: Mapping[str, Any],
        connections: int,
    ) -> None:
        self._fallback = fallback
        self._client_for = client_for
        self._counter = counter
        self._request_defaults = dict(request_defaults)
        self._client_kwargs = dict(client_kwargs)
        self._connections = connections
        self._buckets: dict[str, _Bucket | None] = {}  # None: this bucket goes through the fallback
        self.http_clients = HttpClients(counter)
        self._pid = os.getpid()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._fallback.loop

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        bucket = await self._bucket(request["Bucket"]) if method in _OPERATIONS else None
        if bucket is None:
            return await self._fallback.send_once(method, **request)
        verb, operation = _OPERATIONS[method]
        request = {**bucket.defaults[operation], **request}
        listing = method == "list_objects_v2"
        if not request.keys() <= (LISTING_PARAMETERS if listing else _LEAN_PARAMETERS):
            return await self._fallback.send_once(method, **request)
        if listing:
            path, query = bucket.listing_path, listing_query(request)
        else:
            path = bucket.path_prefix + quote(request["Key"], safe="/~")
            query = {"versionId": request["VersionId"]} if request.get("VersionId") else {}
        headers = self._headers(request)
        if bucket.signer is not None:
            headers = bucket.signer.headers(verb, bucket.host, path, query, headers, await self._frozen(bucket))
        target = path + (f"?{encoded_query(query)}" if query else "")
        response = await self._http().request(verb, bucket.origin, target, headers, host=bucket.host, counts_as=method)
        if response.status >= 300:
            error = await self._error(response, operation)
            if error.response["Error"]["Code"] in _REGION_ERRORS or response.status in (301, 307):
                logger.debug("s3://%s: the endpoint redirects; its requests go through botocore", request["Bucket"])
                self._buckets[request["Bucket"]] = None
                return await self._fallback.send_once(method, **request)
            translated = translate_boto_error(error)
            if translated is error:
                raise error
            raise translated from error
        if listing:
            return await self._listing(response)
        return self._parsed(response, bucket)

    # -- a bucket, asked of botocore once ------------------------------------------------------

    async def _bucket(self, name: str) -> _Bucket | None:
        if os.getpid() != self._pid:  # a forked child: the parent's connections are not ours
            self._pid, self._buckets = os.getpid(), {}
            self.http_clients.forget()
        if name not in self._buckets:
            self._buckets[name] = await self._ask_botocore(name)
        return self._buckets[name]

    async def _ask_botocore(self, name: str) -> _Bucket | None:
        client = await self._client_for(name)
        config = client.meta.config
        signature_version = config.signature_version
        if (
            ":" in name
            or name.endswith("--x-s3")
            or config.proxies
            or config.client_cert
            or signature_version not in (None, "s3v4", botocore.UNSIGNED)
        ):
            return None
        unsigned = signature_version is botocore.UNSIGNED
        credentials = None if unsigned else client._request_signer._credentials
        if credentials is None and not unsigned:
            return None  # botocore says what is missing
        url = await client.generate_presigned_url("get_object", Params={"Bucket": name, "Key": _STAND_IN_KEY})
        parts = urlsplit(url)
        if _STAND_IN_KEY not in parts.path or _behind_a_proxy(parts.scheme, parts.hostname or ""):
            return None
        model = client.meta.service_model
        defaults = {}
        for operation in ("GetObject", "HeadObject", "ListObjectsV2"):
            taken = model.operation_model(operation).input_shape.members
            defaults[operation] = {k: v for k, v in self._request_defaults.items() if k in taken and v is not None}
        return _Bucket(
            origin=f"{parts.scheme}://{parts.netloc}",
            host=parts.netloc,
            path_prefix=parts.path[: parts.path.index(_STAND_IN_KEY)],
            signer=None if unsigned else SigV4Signer(client.meta.region_name or "us-east-1"),
            credentials=credentials,
            defaults=defaults,
            head_answer=HeadAnswerRules.from_shape(model.operation_model("HeadObject").output_shape),
        )

    async def _frozen(self, bucket: _Bucket) -> FrozenCredentials:
        frozen = bucket.credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):
            frozen = await frozen
        return FrozenCredentials(frozen.access_key, frozen.secret_key, frozen.token)

    # -- the request and its answer ------------------------------------------------------------

    @staticmethod
    def _headers(request: Mapping[str, Any]) -> dict[str, str]:
        headers = _sse_c_headers(request)
        if request.get("Range"):
            headers["range"] = request["Range"]
        if request.get("IfMatch"):
            headers["if-match"] = request["IfMatch"]
        if request.get("RequestPayer"):
            headers["x-amz-request-payer"] = request["RequestPayer"]
        return headers

    def _http(self) -> Http1Client:
        return self.http_clients.for_running_loop(self._connections, lambda: _ssl_context(self._client_kwargs))

    def _parsed(self, response: Http1Response, bucket: _Bucket) -> dict[str, Any]:
        headers = response.headers
        if response.method == "HEAD":
            response.release()
            return {**bucket.head_answer.parsed(headers), "ResponseMetadata": {"HTTPStatusCode": response.status}}
        # a GET's answer: only what the transport reads, as every part of every read passes here
        parsed: dict[str, Any] = {
            "ContentLength": int(headers.get("Content-Length", 0)),
            "ETag": headers.get("ETag"),
            "ResponseMetadata": {"HTTPStatusCode": response.status},
            "Body": CountingBodyInto(response, self._counter),  # receive_into, read(n), close()
        }
        if "Content-Range" in headers:
            parsed["ContentRange"] = headers["Content-Range"]
        if "x-amz-version-id" in headers:
            parsed["VersionId"] = headers["x-amz-version-id"]
        return parsed

    @staticmethod
    async def _listing(response: Http1Response) -> dict[str, Any]:
        try:
            listing = parsed_listing(await response.read())
        finally:
            response.release()
        listing["ResponseMetadata"] = {"HTTPStatusCode": response.status}
        if "x-amz-request-charged" in response.headers:
            listing["RequestCharged"] = response.headers["x-amz-request-charged"]
        return listing

    async def _error(self, response: Http1Response, operation: str) -> ClientError:
        """The ClientError botocore would raise for this answer, so errors are translated as they always are."""
        body = b"" if response.method == "HEAD" else await response.read()
        response.release()
        code, message = str(response.status), response.reason or ""
        if body:
            try:
                root = ElementTree.fromstring(body)
                code = root.findtext("Code") or code
                message = root.findtext("Message") or message
            except ElementTree.ParseError:
                pass
        metadata = {
            "HTTPStatusCode": response.status,
            "HTTPHeaders": {name.lower(): value for name, value in response.headers.items()},
            "RequestId": response.headers.get("x-amz-request-id", ""),
        }
        return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": metadata}, operation)
