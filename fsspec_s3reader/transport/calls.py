"""How the transport reaches S3: a declared interface, and its implementation over an aiobotocore client.

The transport needs two things from whoever holds the S3 client: the event
loop its requests run on, and a way to send one request exactly once
(``send_once``): it retries by itself (``retry.py``), so nothing underneath
may retry again. :class:`BotocoreCalls` provides both over the client of an
s3fs filesystem, counting every request and body byte in the filesystem's
counter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from s3fs.errors import translate_boto_error

from ..stats import CountingBody, TransferCounter


class S3Calls(Protocol):
    """What a transport needs to reach S3."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop that ``send_once`` runs on."""
        ...

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        """One HTTP request for ``method`` (``"get_object"``, ``"head_object"``), never retried underneath.

        Errors come as s3fs raises them (``FileNotFoundError``, ``PermissionError``,
        ``OSError``, each with the botocore error as its cause) or as botocore's.
        """
        ...


_ONE_ATTEMPT = "FsspecS3ReaderOneAttempt"
"""A keyword that marks a call as sent once; taken out before botocore checks the parameters."""


def _take_one_attempt_marker(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    # botocore hands every handler of this event the call's parameters and its
    # request context; the context travels with the request to the retry check.
    if params.pop(_ONE_ATTEMPT, False):
        context[_ONE_ATTEMPT] = True


def _refuse_retry_of_marked_calls(request_dict: dict[str, Any], **_: Any) -> bool | None:
    # aiobotocore asks its handlers whether to retry and follows the first
    # that answers; False answers "no", None leaves it to botocore's policy.
    return False if request_dict.get("context", {}).get(_ONE_ATTEMPT) else None


def send_marked_calls_once(client: Any) -> None:
    """Make ``client`` (an aiobotocore S3 client) send each call marked ``one attempt`` exactly once.

    Every other call keeps the client's retry configuration. Registering twice is harmless.
    """
    events = client.meta.events
    events.register("provide-client-params.s3", _take_one_attempt_marker, unique_id=f"{_ONE_ATTEMPT}-take")
    events.register_first("needs-retry.s3", _refuse_retry_of_marked_calls, unique_id=f"{_ONE_ATTEMPT}-refuse")


class BotocoreCalls:
    """:class:`S3Calls` over an s3fs filesystem's aiobotocore client.

    ``client_for(bucket)`` returns the client for a bucket (s3fs keeps one per
    region); ``loop()`` the filesystem's current event loop (a new one after a
    fork); ``request_defaults`` the parameters every request of the
    filesystem carries (``RequestPayer``, SSE-C keys), kept only where an
    operation takes them.
    """

    def __init__(
        self,
        client_for: Callable[[str], Awaitable[Any]],
        loop: Callable[[], asyncio.AbstractEventLoop],
        counter: TransferCounter,
        request_defaults: Mapping[str, Any],
    ) -> None:
        self._client_for = client_for
        self._loop = loop
        self._counter = counter
        self._request_defaults = dict(request_defaults)
        self._parameters: dict[str, frozenset[str]] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop()

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        client = await self._client_for(request["Bucket"])
        send_marked_calls_once(client)
        self._counter.record_request(method)
        call = getattr(client, method)
        try:
            params = {**self._defaults_for(client, call), **request, _ONE_ATTEMPT: True}
            response: dict[str, Any] = await call(**params)
        except Exception as exc:
            translated = translate_boto_error(exc)
            if translated is exc:
                raise
            raise translated from exc
        if "Body" in response:
            response["Body"] = CountingBody(response["Body"], self._counter)
        return response

    def _defaults_for(self, client: Any, call: Any) -> dict[str, Any]:
        """The filesystem-wide parameters that this operation takes."""
        operation = client.meta.method_to_api_mapping[call.__name__]
        taken = self._parameters.get(operation)
        if taken is None:
            shape = client.meta.service_model.operation_model(operation).input_shape
            taken = self._parameters[operation] = frozenset(shape.members if shape is not None else ())
        return {name: value for name, value in self._request_defaults.items() if name in taken and value is not None}
