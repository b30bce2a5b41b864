"""Make sure the demo superuser exists and print how to log in (used by `make run`)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a demo superuser if none exists and print its credentials."

    def handle(self, *args: Any, **opts: Any) -> None:
        user_model = get_user_model()
        secret_file = Path(settings.BASE_DIR) / ".devstack" / "demo-admin.txt"
        if not user_model.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser("admin", "admin@example.com", password)
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(password)
            secret_file.chmod(0o600)
            self.stdout.write(f"Demo superuser created: admin / {password}")
        elif secret_file.exists():
            self.stdout.write(f"Demo superuser: admin / {secret_file.read_text().strip()}")
        else:
            self.stdout.write("A superuser already exists (credentials not managed by make run).")
