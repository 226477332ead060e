"""Rotate the master key: rewrap every live patient key under a new one; records are not re-encrypted.

With key files (the default) the new key is created for you and the old one is set
aside as master.retired-<id>.key. With HEALTHLEDGER_MASTER_KEY, put the new key
first ("NEW,OLD"), run this, then remove OLD from the environment.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from records import keys
from records.services import master_key_rotate


class Command(BaseCommand):
    help = "Rewrap every patient key under a new master key and retire the old one."

    def handle(self, *args: Any, **options: Any) -> None:
        count = master_key_rotate()
        current = keys.master_keyring(refresh=True).current_id
        noun = "patient key" if count == 1 else "patient keys"
        self.stdout.write(f"rewrapped {count} {noun} under master key {current}")
