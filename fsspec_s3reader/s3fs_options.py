"""Cheap checks of the s3fs and botocore options a filesystem is built with, before any request is sent.

Without them a value of the wrong type surfaces at the first request, deep in
the HTTP client, as what looks like a network failure
(``config_kwargs={"max_pool_connections": "many"}``), or quietly means
something else (``anon="false"`` is true). Each check names the option, the
value, and what the option takes. Only what can be checked without a client
is checked; botocore and the HTTP client stay the judges of the rest.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import BotoCoreError

_BOOLEANS = ("anon", "use_ssl", "requester_pays", "version_aware", "cache_regions")
_STRINGS = ("key", "secret", "token", "username", "password")
_MAPPINGS = ("client_kwargs", "config_kwargs", "s3_additional_kwargs")
_RETRY_KEYS = {"max_attempts": 0, "total_max_attempts": 1, "mode": None}
_RETRY_MODES = ("legacy", "standard", "adaptive")


def check_s3fs_options(options: Mapping[str, Any]) -> None:
    """Refuse s3fs options (as given to ``S3FileSystem``) that are wrong whatever the endpoint."""
    for name in _BOOLEANS:
        if name in options and not isinstance(options[name], bool):
            raise TypeError(f"{name} must be True or False, got {options[name]!r}")
    for name in _STRINGS:
        if options.get(name) is not None and not isinstance(options[name], str):
            raise TypeError(f"{name} must be a str (or None to take it from the environment), got {options[name]!r}")
    for name in _MAPPINGS:
        if options.get(name) is not None and not isinstance(options[name], Mapping):
            raise TypeError(f"{name} must be a dict of keyword arguments, got {options[name]!r}")
    _check_endpoint_url("endpoint_url", options.get("endpoint_url"))
    _check_count("default_block_size", options.get("default_block_size"), "bytes per block")
    _check_count("max_concurrency", options.get("max_concurrency"), "requests at once")
    client_kwargs = options.get("client_kwargs") or {}
    _check_endpoint_url("client_kwargs['endpoint_url']", client_kwargs.get("endpoint_url"))
    region = client_kwargs.get("region_name")
    if region is not None and not isinstance(region, str):
        raise TypeError(f"client_kwargs['region_name'] must be a str, e.g. 'us-east-1', got {region!r}")
    check_config_kwargs(options.get("config_kwargs") or {})


def check_config_kwargs(config_kwargs: Mapping[str, Any]) -> None:
    """Refuse ``config_kwargs`` that botocore's ``Config`` or the HTTP client would choke on at the first request."""
    known = sorted(Config.OPTION_DEFAULTS)
    for name in sorted(set(config_kwargs) - set(known)):
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise TypeError(f"config_kwargs: botocore's Config takes no {name!r}; {hint}it takes {', '.join(known)}")
    _check_count("config_kwargs['max_pool_connections']", config_kwargs.get("max_pool_connections"), "connections")
    for name in ("connect_timeout", "read_timeout"):
        _check_seconds(f"config_kwargs[{name!r}]", config_kwargs.get(name))
    for name in ("tcp_keepalive", "parameter_validation"):
        value = config_kwargs.get(name)
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"config_kwargs[{name!r}] must be True or False, got {value!r}")
    proxies = config_kwargs.get("proxies")
    if proxies is not None and not (
        isinstance(proxies, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in proxies.items())
    ):
        raise TypeError(
            f"config_kwargs['proxies'] must map a scheme to a proxy URL, e.g. {{'https': 'http://proxy:3128'}}, "
            f"got {proxies!r}"
        )
    _check_retries(config_kwargs.get("retries"))
    try:
        Config(**config_kwargs)
    except BotoCoreError as exc:  # what botocore refuses beyond the checks above
        raise ValueError(f"config_kwargs: {exc}") from exc


def _check_retries(retries: Any) -> None:
    """botocore's ``retries``: a dict of ``max_attempts``, ``total_max_attempts`` and ``mode``."""
    if retries is None:
        return
    if not isinstance(retries, Mapping):
        example = "{'max_attempts': 3, 'mode': 'standard'}"
        raise TypeError(f"config_kwargs['retries'] must be a dict such as {example}, got {retries!r}")
    for key, value in retries.items():
        if key not in _RETRY_KEYS:
            raise ValueError(f"config_kwargs['retries'] takes {', '.join(_RETRY_KEYS)}; got {key!r}")
        if key == "mode":
            if value not in _RETRY_MODES:
                raise ValueError(
                    f"config_kwargs['retries']['mode'] must be one of {', '.join(_RETRY_MODES)}, got {value!r}"
                )
        else:
            least = _RETRY_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"config_kwargs['retries'][{key!r}] must be an int, got {value!r}")
            if value < least:  # type: ignore[operator]
                raise ValueError(f"config_kwargs['retries'][{key!r}] must be >= {least}, got {value}")


def _check_endpoint_url(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a URL as a str, e.g. 'http://localhost:9000', got {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{name} must be a URL with its scheme and host, e.g. 'https://s3.us-east-1.amazonaws.com' "
            f"or 'http://localhost:9000', got {value!r}"
        )


def _check_count(name: str, value: Any, unit: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of {unit}, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 ({unit}), got {value}")


def _check_seconds(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value}")
