"""Create an API key and print it once: ``manage.py create_api_key --name ci-bot --role operator``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from fulfillment.audit import AuditedCommand
from fulfillment.errors import FulfillmentError
from fulfillment.models import ApiKey
from fulfillment.services.api_keys import api_key_create, api_key_revoke


class Command(AuditedCommand):
    help = "Create an API key (printed once; only its hash is stored), or revoke one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="unique name, recorded as the actor")
        parser.add_argument("--role", choices=ApiKey.Role.values, default=ApiKey.Role.VIEWER)
        parser.add_argument(
            "--throttle-rate",
            default="",
            help="this key's request limit, e.g. 1000000/min (default: THROTTLE_RATE_KEY)",
        )
        parser.add_argument("--revoke", action="store_true", help="revoke the key named --name")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            if opts["revoke"]:
                api_key = api_key_revoke(name=opts["name"])
                self.stdout.write(f"revoked API key {api_key.name!r}")
                return
            issued = api_key_create(
                name=opts["name"], role=opts["role"], throttle_rate=opts["throttle_rate"]
            )
        except FulfillmentError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(
            f"API key {issued.api_key.name!r} ({issued.api_key.role}) created. "
            "It is shown only now; store it safely:"
        )
        self.stdout.write(issued.raw_key)
