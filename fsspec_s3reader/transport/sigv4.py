"""AWS Signature Version 4 for one S3 GET or HEAD: the few hashes a request needs, and nothing else.

botocore signs a request after building it through its whole pipeline; here
the request is already built (a URL, a handful of headers), so signing is
a canonical request, a string to sign, and one HMAC with a key derived once
per day and region::

    canonical request  = METHOD \\n path \\n query \\n headers \\n signed names \\n payload hash
    string to sign     = AWS4-HMAC-SHA256 \\n time \\n date/region/s3/aws4_request \\n sha256(canonical request)
    signature          = HMAC(signing key(secret, date, region), string to sign)
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()
"""A GET or HEAD has no body; S3 checks that the request says so."""


@dataclass(frozen=True)
class FrozenCredentials:
    access_key: str
    secret_key: str
    token: str | None = None


def encoded_query(query: Mapping[str, str]) -> str:
    """``query`` percent-encoded and ordered as SigV4's canonical query: the URL sends it exactly so."""
    return "&".join(f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in sorted(query.items()))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


class SigV4Signer:
    """Signs S3 requests for one region; the derived key is kept for the day (and the secret) it was made for."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self._region = region
        self._service = service
        self._key_for: tuple[str, str] | None = None
        self._key = b""

    def headers(
        self,
        method: str,
        host: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        credentials: FrozenCredentials,
        now: datetime.datetime | None = None,
    ) -> dict[str, str]:
        """``headers`` plus the date, payload hash, token and ``Authorization`` that sign them.

        ``path`` is the URL path exactly as sent (already percent-encoded);
        ``query`` the query parameters, not encoded. Every header given is signed.
        """
        now = now or datetime.datetime.now(datetime.timezone.utc)
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed = {name.lower(): value.strip() for name, value in headers.items()}
        signed["host"] = host
        signed["x-amz-date"] = stamp
        signed["x-amz-content-sha256"] = EMPTY_PAYLOAD_SHA256
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        names = sorted(signed)
        canonical_query = encoded_query(query)
        canonical_headers = "".join(f"{name}:{signed[name]}\n" for name in names)
        signed_names = ";".join(names)
        canonical_request = "\n".join(
            (method, path, canonical_query, canonical_headers, signed_names, EMPTY_PAYLOAD_SHA256)
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        string_to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest())
        )
        signature = hmac.new(self._signing_key(credentials.secret_key, day), string_to_sign.encode("utf-8"), "sha256")
        del signed["host"]  # the HTTP client sends it from the URL
        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature.hexdigest()}"
        )
        return signed

    def _signing_key(self, secret: str, day: str) -> bytes:
        if self._key_for != (secret, day):
            key = _hmac(f"AWS4{secret}".encode(), day)
            for part in (self._region, self._service, "aws4_request"):
                key = _hmac(key, part)
            self._key_for, self._key = (secret, day), key
        return self._key
