"""Keeping credentials out of logs: a filter that masks keys, secrets, tokens and signatures.

botocore logs every request it signs at DEBUG, headers and signature
included, and s3fs logs the keywords of every call (an SSE-C key among them).
The filesystem installs :class:`SecretRedactingFilter` on those loggers and
tells it the credentials it was given, so that turning on DEBUG logging never
prints them.
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "<redacted>"

LOGGERS_THAT_SEE_REQUESTS = (
    "botocore.auth",
    "botocore.client",
    "botocore.credentials",
    "botocore.endpoint",
    "botocore.handlers",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.parsers",
    "botocore.regions",
    "botocore.retryhandler",
    "botocore.utils",
    "aiobotocore.client",
    "aiobotocore.credentials",
    "aiobotocore.endpoint",
    "aiobotocore.httpsession",
    "aiobotocore.regions",
    "s3fs",
    "fsspec",
)
"""Loggers whose records may carry request headers, signing material or call keywords."""

_PATTERNS = (
    # A header in a dict's repr: 'Authorization': b'AWS4-HMAC-SHA256 Credential=..., Signature=...'
    re.compile(
        r"""(?i)((?:authorization|x-amz-security-token|x-amz-server-side-encryption-customer-key(?:-md5)?"""
        r"""|sseCustomerKey(?:MD5)?)['"]?\s*[:=]\s*b?['"])[^'"]*"""
    ),
    # The same as a raw header line (botocore's canonical request): x-amz-security-token:...
    re.compile(r"(?im)^((?:authorization|x-amz-security-token|x-amz-server-side-encryption-customer-key):)\S.*$"),
    # Presigned URLs and signed query strings
    re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s'\"]*"),
    re.compile(r"(?i)\b(Signature=)[^,&\s'\"]*"),
    # botocore.auth: "Signature:\n<hex>"
    re.compile(r"(?i)(Signature:\s*)[0-9a-f]{16,}"),
)

_SHORTEST_MASKED = 4
"""Shorter values are not masked by value: masking every "ab" would garble the logs (headers stay masked)."""

_known_secrets: set[str] = set()
_lock = threading.Lock()


def redact(text: str) -> str:
    """``text`` with every credential, token, signature and registered secret masked."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


class SecretRedactingFilter(logging.Filter):
    """Rewrites a record's message with :func:`redact`; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's to report, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = SecretRedactingFilter()


def protect_secrets(*secrets: object) -> None:
    """Mask these values (credentials a filesystem was given) in the loggers that could print them.

    Installs the filter (once) on :data:`LOGGERS_THAT_SEE_REQUESTS` and on
    every botocore and aiobotocore logger that exists by now, and adds
    every string of 4 characters or more among ``secrets`` to the values it
    masks.
    """
    with _lock:
        _known_secrets.update(s for s in secrets if isinstance(s, str) and len(s) >= _SHORTEST_MASKED)
    existing = [name for name in logging.root.manager.loggerDict if name.startswith(("botocore.", "aiobotocore."))]
    for name in (*LOGGERS_THAT_SEE_REQUESTS, *existing):
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
