"""TOTP seeds are stored sealed under the account key: a copy of the devices table makes no code."""

from __future__ import annotations

import importlib
import secrets

import pytest
from django.apps import apps
from django_otp.plugins.otp_totp.models import TOTPDevice

from healthledger.errors import IntegrityFailure
from healthledger.lib.keyfiles import clear_key_caches
from portal.models import SealedTOTPDevice
from portal.services import totp_device_begin

pytestmark = pytest.mark.django_db


def test_the_stored_seed_is_sealed_and_opens_only_with_the_account_key(alice, patient_user, settings) -> None:
    alice.get("/account/security/?setup=1")
    device = SealedTOTPDevice.objects.get(user=patient_user)
    seed = device.bin_key
    stored = TOTPDevice.objects.get(pk=device.pk).key

    assert len(seed) == 20
    assert seed.hex() not in stored
    assert stored.startswith("s1.")
    with pytest.raises(ValueError):  # django-otp's own reading of the column (a database copy) gets no seed
        TOTPDevice.objects.get(pk=device.pk).bin_key  # noqa: B018
    settings.HEALTHLEDGER_ACCOUNT_KEY = "A" * 43  # another server's account key
    clear_key_caches()
    with pytest.raises(IntegrityFailure):
        SealedTOTPDevice.objects.get(pk=device.pk).bin_key  # noqa: B018


def test_a_sealed_seed_copied_onto_another_users_device_does_not_open(patient_user, clinician) -> None:
    alices = totp_device_begin(user=patient_user)
    carols = totp_device_begin(user=clinician)

    SealedTOTPDevice.objects.filter(pk=carols.pk).update(key=alices.key)

    with pytest.raises(IntegrityFailure):
        SealedTOTPDevice.objects.get(pk=carols.pk).bin_key  # noqa: B018


def test_the_migration_seals_seeds_stored_in_the_clear(patient_user) -> None:
    seed = secrets.token_bytes(20)
    legacy = TOTPDevice.objects.create(user=patient_user, name="app", confirmed=True, key=seed.hex())
    migration = importlib.import_module("portal.migrations.0002_totp_seeds_sealed")

    migration.seal_stored_seeds(apps, None)
    migration.seal_stored_seeds(apps, None)  # a second run leaves sealed seeds alone

    assert SealedTOTPDevice.objects.get(pk=legacy.pk).bin_key == seed
    assert seed.hex() not in TOTPDevice.objects.get(pk=legacy.pk).key
