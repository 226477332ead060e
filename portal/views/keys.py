"""The patient's signing key: who holds it, creating it in the browser, taking it from the operator, rotating it.

The private key and the recovery phrase exist only in the browser (portal/static/portal/keys.js). These views
see addresses and signatures; the one exception is "take your key", whose answer carries the key the operator
held, once, to the browser that then registers it and so destroys the server's copy.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from consent.key_backup import (
    InvalidKeyBackup,
    KeyBackupStale,
    backup_blob_parse,
    key_backup_delete,
    key_backup_for_restore,
    key_backup_status,
    key_backup_store,
)
from consent.key_reset import InvalidKeyReset, key_reset_cancel, key_reset_cancel_typed_data, key_reset_open
from consent.key_reset import key_reset_request as reset_request
from consent.keys import (
    InvalidKeyRegistration,
    patient_key_custody,
    patient_key_register,
    patient_key_release,
    registration_typed_data,
)
from healthledger.errors import ConsentDenied
from ledger import signing
from portal.views.common import patient_page
from records.models import Patient


def key_context(patient: Patient) -> dict[str, object]:
    """What every signing page tells the browser: who holds the key, and its registered address."""
    fresh = Patient.objects.only("wallet_address").get(pk=patient.pk)
    return {"key_custody": patient_key_custody(patient), "key_address": fresh.wallet_address}


@require_GET
@patient_page
def keys(request: HttpRequest, patient: Patient) -> HttpResponse:
    context: dict[str, object] = {"patient": patient, "nav": "keys", **key_context(patient)}
    if not patient.is_erased:
        previous = context["key_address"] if context["key_custody"] == "browser" else signing.ZERO_ADDRESS
        # The key the browser registers is filled in there; the types, the domain and the record tag are ours.
        template = registration_typed_data(patient=patient, key=signing.ZERO_ADDRESS, previous=str(previous))
        context["registration_typed_data"] = signing.typed_data_json(template)
        context["key_backup_status"] = key_backup_status(patient=patient)
        open_reset = key_reset_open(patient=patient)
        context["key_reset"] = open_reset
        if open_reset is not None:
            context["reset_cancel_typed_data"] = signing.typed_data_json(key_reset_cancel_typed_data(reset=open_reset))
    return render(request, "portal/keys.html", context)


def _password_refused(request: HttpRequest) -> JsonResponse | None:
    """Handing a key over, or naming the first key, asks for the account password again: a stolen session
    alone must not be enough to walk away with her key or to register one of its own in her name."""
    if request.user.check_password(request.POST.get("password", "")):  # type: ignore[union-attr]
        return None
    return JsonResponse({"error": "your account password is needed for this, and that one is not it"}, status=400)


@require_POST
@patient_page
def key_take(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Step one of "take your key": the operator's copy, to this browser only, once it asks."""
    refused = _password_refused(request)
    if refused is not None:
        return refused
    try:
        private_key = patient_key_release(patient=patient, by=request.user)  # type: ignore[arg-type]
    except (InvalidKeyRegistration, ConsentDenied) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"private_key": "0x" + private_key.hex()})


@require_POST
@patient_page
def key_register(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Register the key the browser holds, proven by its signature (and the old key's, for a rotation)."""
    if patient_key_custody(patient) == "none":
        refused = _password_refused(request)
        if refused is not None:
            return refused
    try:
        registration = patient_key_register(
            patient=patient,
            by=request.user,  # type: ignore[arg-type]
            address=request.POST.get("address", ""),
            signature=request.POST.get("signature", ""),
            previous_signature=request.POST.get("previous_signature", ""),
        )
    except (InvalidKeyRegistration, ConsentDenied) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"kind": registration.kind, "address": registration.address})


@require_POST
@patient_page
def key_reset(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Ask for an operator-assisted reset: the new key made in this browser signs it; the password is asked again."""
    refused = _password_refused(request)
    if refused is not None:
        return refused
    try:
        reset = reset_request(
            patient=patient,
            by=request.user,  # type: ignore[arg-type]
            address=request.POST.get("address", ""),
            signature=request.POST.get("signature", ""),
        )
    except (InvalidKeyReset, ConsentDenied) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"status": reset.status, "address": reset.address})


@require_POST
@patient_page
def key_reset_refuse(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Cancel a reset under way, with the registered key's signature."""
    try:
        reset = key_reset_cancel(
            patient=patient,
            by=request.user,  # type: ignore[arg-type]
            signature=request.POST.get("signature", ""),
        )
    except (InvalidKeyReset, ConsentDenied) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"status": reset.status})


def _backup_upload(request: HttpRequest, patient: Patient) -> JsonResponse:
    fields: dict[str, object] = {k: request.POST.get(k, "") for k in ("version", "address", "salt", "nonce")}
    fields["ciphertext"] = request.POST.get("ciphertext", "")
    try:
        fields["kdf"] = json.loads(request.POST.get("kdf", ""))
        backup = key_backup_store(patient=patient, by=request.user, blob=backup_blob_parse(fields))  # type: ignore[arg-type]
    except json.JSONDecodeError:
        return JsonResponse({"error": "the backup's key derivation parameters are not JSON"}, status=400)
    except (InvalidKeyBackup, ConsentDenied) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"status": "current", "address": backup.address})


@require_http_methods(["GET", "POST"])
@patient_page
def key_backup(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Her encrypted key backup: POST stores what her browser sealed, GET hands it back for a restore there.

    Only ciphertext and KDF parameters pass here; the key and the backup passphrase stay in the browser."""
    if request.method == "POST":
        return _backup_upload(request, patient)
    try:
        blob = key_backup_for_restore(patient=patient, by=request.user)  # type: ignore[arg-type]
    except KeyBackupStale as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    except ConsentDenied as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if blob is None:
        return JsonResponse({"error": "you have no server backup of your key"}, status=404)
    return JsonResponse({**blob.as_json(), "record": str(patient.pk)})


@require_POST
@patient_page
def key_backup_remove(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Delete her server backup (the key in her browser and her recovery phrase are untouched)."""
    try:
        deleted = key_backup_delete(patient=patient, by=request.user)  # type: ignore[arg-type]
    except ConsentDenied as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"deleted": deleted})
