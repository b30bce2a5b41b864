"""The simulated warehouse: how long each stage takes and whether it fails.

Delays and failure rates are settings (``PIPELINE_DELAYS``, ``PIPELINE_FAILURE_RATES``); with
``PIPELINE_RANDOM_SEED`` set, both are deterministic per order and stage.
"""

from __future__ import annotations

import random

from django.conf import settings


def _rng(order_pk: int, stage: str, what: str) -> random.Random | None:
    seed = settings.PIPELINE_RANDOM_SEED
    return None if seed is None else random.Random(f"{seed}:{order_pk}:{stage}:{what}")


def stage_delay(*, order_pk: int, stage: str) -> float:
    """Seconds to wait before the job that moves ``order_pk`` into ``stage`` runs."""
    low, high = settings.PIPELINE_DELAYS[stage]
    if high <= 0:
        return 0.0
    rng = _rng(order_pk, stage, "delay")
    return (rng or random).uniform(low, high)


def stage_fails(*, order_pk: int, stage: str) -> bool:
    """Whether the simulated ``stage`` fails for this order (deterministic under a seed)."""
    rate = float(settings.PIPELINE_FAILURE_RATES.get(stage, 0.0))
    if rate <= 0:
        return False
    rng = _rng(order_pk, stage, "failure")
    return (rng or random).random() < rate
