"""A HeadObject answer's headers as the dict botocore would return, read by the rules of botocore's own model.

The model says which header carries which member, and its type: read once,
the rules make each answer a pass over the headers it names. s3fs's
``info`` reads the size, ETag, date, storage class, version and content
type; its ``metadata`` the ``x-amz-meta-`` headers; all are there, typed as
botocore types them.
"""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .listing import iso_moment


@dataclass(frozen=True)
class _Member:
    name: str
    header: str
    kind: str  # botocore's type name: string, long, integer, boolean, timestamp


@dataclass(frozen=True)
class HeadAnswerRules:
    """Which header says which member of a HeadObject answer, from botocore's model of the operation."""

    members: tuple[_Member, ...]
    map_prefixes: tuple[tuple[str, str], ...]  # (member, header prefix): Metadata from the x-amz-meta- headers

    @classmethod
    def from_shape(cls, shape: Any) -> HeadAnswerRules:
        members, prefixes = [], []
        for name, member in shape.members.items():
            where = member.serialization
            if where.get("location") == "header":
                members.append(_Member(name, where.get("name", name), member.type_name))
            elif where.get("location") == "headers":
                prefixes.append((name, where.get("name", "").lower()))
        return cls(tuple(members), tuple(prefixes))

    def parsed(self, headers: Mapping[str, str]) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        for member in self.members:
            value = headers.get(member.header)
            if value is not None:
                answer[member.name] = _typed(member.kind, value)
        for name, prefix in self.map_prefixes:
            found = {key[len(prefix) :]: value for key, value in headers.items() if key.lower().startswith(prefix)}
            if found:
                answer[name] = found
        return answer


def _typed(kind: str, value: str) -> Any:
    if kind in ("long", "integer"):
        return int(value)
    if kind == "boolean":
        return value.lower() == "true"
    if kind == "timestamp":
        return _moment(value)
    return value


def _moment(value: str) -> datetime.datetime | str:
    """An HTTP date (``Last-Modified``) or an ISO 8601 one; the text itself where it is neither (``Expires`` may be)."""
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        pass
    try:
        return iso_moment(value)
    except ValueError:
        return value
