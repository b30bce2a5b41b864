"""Schema conventions: what every router's input and output schemas share.

- Request bodies are ``StrictSchema`` subclasses: unknown fields are refused (422), types are
  strict (a boolean is ``true``/``false``, a number is not a string, a string is not a number),
  surrounding whitespace of strings is stripped.
- Every bounded value uses one of the shared types below, which mirror the database columns
  (``DbId`` a bigint primary key, ``Count32`` / ``PositiveInt32`` an integer column, ``Price`` a
  ``numeric(12, 2)`` as a decimal string), so a value the schema allows is one the database
  stores and a value it refuses is a 422, never a database error.
- Query parameters come as strings; ``QueryBool`` takes only ``true``/``false``, and numbers in
  the query use the same bounds as in bodies.
- A rule JSON Schema can express (bounds, patterns, enums, exactly-one-of) is in the schema; a
  rule it cannot (a product at most once per order) is in the field's description.
- Security and the common error responses of every operation are declared in one place, the
  NinjaAPI's schema hook (``config/api.py``): a new router only uses these types and declares its
  success responses.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from ninja import Schema
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
)

INT32_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1


class StrictSchema(Schema):
    """Base of every request body: unknown fields refused, stripped strings. Its fields use the
    strict types below (``Bool``, ``DbId``, ...), not bare ``int``/``bool``, which coerce."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


StrictIn = StrictSchema  # the name the input schemas used first

# ----- numbers ----------------------------------------------------------------------------------


# An integer in a request body (strict: ``"3"`` and ``true`` are refused; the JSON parser reads
# ``3.0`` as the integer 3, as JSON Schema does).
JsonInt = StrictInt
DbId = Annotated[JsonInt, Field(ge=1, le=BIGINT_MAX)]
PositiveInt32 = Annotated[JsonInt, Field(ge=1, le=INT32_MAX)]
Count32 = Annotated[JsonInt, Field(ge=0, le=INT32_MAX)]
Version = Annotated[JsonInt, Field(ge=1, le=INT32_MAX, description="the row's `version`")]
# In the query string (always text): the same bounds, parsed from digits.
QueryDbId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
QueryOffset = Annotated[int, Field(ge=0, le=INT32_MAX)]

PRICE_PATTERN = r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$"
_PRICE_RE = re.compile(PRICE_PATTERN)


def _price(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str) or not _PRICE_RE.match(value):
        raise ValueError(
            'a price is a decimal string such as "12.50" (up to 10 digits, 2 decimals)'
        )
    return Decimal(value)


Price = Annotated[
    Decimal,
    BeforeValidator(_price),
    WithJsonSchema({"type": "string", "pattern": PRICE_PATTERN, "examples": ["12.50"]}),
]

# ----- strings ----------------------------------------------------------------------------------

# PostgreSQL text cannot hold NUL; a name must have something besides whitespace.
NO_NUL = r"^[^\x00]*$"
# Whitespace spelled out (the characters stripping removes), so that every regex engine that reads
# the pattern (the server's, the client's, the fuzzer's) agrees on it.
_WHITESPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = rf"^[^\x00]*[^\x00{_WHITESPACE}][^\x00]*$"
SKU_PATTERN = r"^[A-Za-z0-9._-]+$"
Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=SKU_PATTERN)]


# With ``Field(max_length=...)`` on the field: text that fits a column; required text not blank.
Text = Annotated[str, Field(pattern=NO_NUL)]
RequiredText = Annotated[str, Field(min_length=1, pattern=NOT_BLANK)]


def _query_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("must be true or false")


QueryBool = Annotated[bool, BeforeValidator(_query_bool), WithJsonSchema({"type": "boolean"})]

_DATE = r"\d{4}-\d{2}-\d{2}"
_DATE_RE = re.compile(rf"^{_DATE}$")
_DATETIME_RE = re.compile(
    rf"^{_DATE}[Tt]\d{{2}}:\d{{2}}:\d{{2}}(\.\d+)?([Zz]|[+-]\d{{2}}:\d{{2}})$"
)


def _iso(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str) and not pattern.match(value):
            raise ValueError(f"must be an RFC 3339 {what}")
        return value

    return BeforeValidator(check)


# Dates in the query or path: RFC 3339 only (no Unix timestamps, no naive date-times).
QueryDate = Annotated[date, _iso(_DATE_RE, "date such as 2026-01-31")]
QueryDateTime = Annotated[datetime, _iso(_DATETIME_RE, "date-time such as 2026-01-31T12:00:00Z")]
Bool = StrictBool

# ----- errors -----------------------------------------------------------------------------------


class ErrorBody(Schema):
    code: str = Field(description="stable machine-readable code", examples=["insufficient_stock"])
    message: str = Field(description="for people; may change")
    details: dict[str, Any] = Field(default_factory=dict, description="data of the error")


class ErrorOut(Schema):
    """The one error shape of every 4xx and 5xx answer."""

    error: ErrorBody
