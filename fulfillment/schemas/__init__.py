"""Ninja In/Out schemas, one module per area: explicit fields, validation at the edge."""

from fulfillment.schemas.common import ErrorBody, ErrorOut, StrictIn, StrictSchema

__all__ = ["ErrorBody", "ErrorOut", "StrictIn", "StrictSchema"]
