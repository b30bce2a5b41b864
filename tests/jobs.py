"""Jobs deferred by the test at hand.

Procrastinate's tables outlive the flush of transactional tests, so tests count only the jobs
created after the ``remember_last_job`` fixture ran (use it with
``pytest.mark.usefixtures("remember_last_job")``)."""

from __future__ import annotations

import pytest
from django.db.models import QuerySet
from procrastinate.contrib.django.models import ProcrastinateJob

_baseline = 0


@pytest.fixture
def remember_last_job(db: None) -> None:
    global _baseline
    _baseline = ProcrastinateJob.objects.order_by("-id").values_list("id", flat=True).first() or 0


def new_jobs() -> QuerySet[ProcrastinateJob]:
    return ProcrastinateJob.objects.filter(id__gt=_baseline)
