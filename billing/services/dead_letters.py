"""Settlements set aside: a record that can never be written is kept here instead of blocking billing."""

from __future__ import annotations

import dataclasses
import json

from activity.records import GenerationRecord

from ..models import SettlementDeadLetter


def settlement_dead_letter_record(*, record: GenerationRecord, reason: str) -> SettlementDeadLetter:
    """Keep ``record`` with the reason it could not be written (once per generation id)."""
    data = json.loads(json.dumps(dataclasses.asdict(record), default=str))  # json: any size of integer
    letter, _created = SettlementDeadLetter.objects.get_or_create(
        generation_id=record.id[:64],
        defaults={
            "account_id": record.account_id,
            "held": record.held,
            "cost": record.cost,
            "reason": reason[:4000],
            "record": data,
        },
    )
    return letter
