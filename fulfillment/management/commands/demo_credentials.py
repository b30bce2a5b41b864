"""Make sure the demo superuser and one demo API key per role exist, and print them (`make run`).

Secrets are created once and kept under the dev stack directory (``.devstack/``, mode 0600), so
later runs print the same credentials.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from fulfillment.models import ApiKey
from fulfillment.selectors.api_keys import api_key_for
from fulfillment.services.api_keys import api_key_replace


def _devstack_dir() -> Path:
    return Path(os.environ.get("DEVSTACK_DIR", Path(settings.BASE_DIR) / ".devstack"))


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)


class Command(BaseCommand):
    help = "Create the demo superuser and demo API keys if missing and print their credentials."

    def handle(self, *args: Any, **opts: Any) -> None:
        self._superuser()
        self._api_keys()

    def _superuser(self) -> None:
        user_model = get_user_model()
        secret_file = _devstack_dir() / "demo-admin.txt"
        if not user_model.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser("admin", "admin@example.com", password)
            _write_secret(secret_file, password)
            self.stdout.write(f"Demo superuser created: admin / {password}")
        elif secret_file.exists():
            self.stdout.write(f"Demo superuser: admin / {secret_file.read_text().strip()}")
        else:
            self.stdout.write("A superuser already exists (credentials not managed by make run).")

    def _api_keys(self) -> None:
        key_file = _devstack_dir() / "demo-keys.json"
        try:
            stored: dict[str, str] = json.loads(key_file.read_text())
        except (OSError, ValueError):
            stored = {}
        keys: dict[str, str] = {}
        for role in ApiKey.Role.values:
            name = f"demo-{role}"
            raw = stored.get(role, "")
            api_key = api_key_for(raw_key=raw) if raw else None
            if api_key is None or api_key.name != name or api_key.role != role:
                raw = api_key_replace(name=name, role=role).raw_key
            keys[role] = raw
        if keys != stored:
            _write_secret(key_file, json.dumps(keys, indent=2))
        self.stdout.write("Demo API keys (send as `Authorization: Bearer <key>`):")
        for role, raw in keys.items():
            self.stdout.write(f"  {role:<9}{raw}")
        anonymous = "on" if getattr(settings, "ALLOW_ANONYMOUS_READS", False) else "off"
        self.stdout.write(f"Anonymous reads are {anonymous} (ALLOW_ANONYMOUS_READS).")
        self.stdout.write(
            f"  e.g. curl -H 'Authorization: Bearer {keys['viewer']}' "
            f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/api/v1/products/"
        )
