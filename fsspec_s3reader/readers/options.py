"""A strategy's options: declared once, as the keyword-only parameters of its reader's ``__init__``, and checked.

``S3ReaderConstructor.range_based(buffer_size=...)``, ``reader="range_based",
buffer_size=...`` in storage options and ``RangedS3Reader(..., buffer_size=...)``
all arrive here: the defaults come from the signature, each value from the
reader's ``option_checks``, so a wrong value fails where it is given.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

OptionCheck = Callable[[str, Any], Any]
"""``check(name, value)``: the value to use, or an error that names the option."""


def byte_count_check(least: int, hint: str) -> OptionCheck:
    """The check of an option that is a whole number of bytes, at least ``least`` (``hint`` says what that means)."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int number of bytes, got {value!r}")
        if value < least:
            raise ValueError(f"{name} must be >= {least} bytes ({hint}), got {value}")
        return value

    return check


@functools.cache
def _defaults(reader_class: type) -> tuple[tuple[str, Any], ...]:
    # Read once per class: inspect.signature costs more than opening a file.
    parameters = inspect.signature(reader_class.__init__).parameters.values()  # type: ignore[misc]
    return tuple((p.name, p.default) for p in parameters if p.kind is p.KEYWORD_ONLY)


def option_defaults(reader_class: type) -> dict[str, Any]:
    """A reader class's options and their defaults: the keyword-only parameters of its ``__init__``."""
    return dict(_defaults(reader_class))


def checked_options(
    reader_class: type, strategy: str, checks: Mapping[str, OptionCheck], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Every option of a strategy: ``given`` over the defaults, each checked (``None`` means the default)."""
    defaults = option_defaults(reader_class)
    unknown = sorted(given.keys() - defaults.keys())
    if unknown:
        takes = f"takes {', '.join(sorted(defaults))}" if defaults else "takes no options"
        raise ValueError(f"reader {strategy!r} does not take {', '.join(unknown)}; it {takes}")
    options: dict[str, Any] = {}
    for name, default in defaults.items():
        value = given.get(name)
        value = default if value is None else value
        check = checks.get(name)
        options[name] = value if check is None else check(name, value)
    return options
