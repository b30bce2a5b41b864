"""Schemas shared by every router."""

from ninja import Schema
from pydantic import ConfigDict, Field


class StrictIn(Schema):
    """Input schemas reject unknown fields, so a typo is a 422 instead of being ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ErrorBody(Schema):
    code: str
    message: str
    details: dict = Field(default_factory=dict)


class ErrorOut(Schema):
    error: ErrorBody
