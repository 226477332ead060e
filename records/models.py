"""The encrypted record store: patients, resources, their versions and the blind index.

No plaintext FHIR is ever stored. A version row holds the resource's canonical JSON
sealed under a per-version data key; the data key is sealed under the patient's
key; the patient's key is sealed under the master key, which never enters the
database. Erasure drops the wrapped patient key, and with it every version.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Patient(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="patient_record"
    )
    # Server id of this record's FHIR Patient resource, given when the record is made: never a
    # source's id (ids in a source do not decide whose record it is). Empty only on old rows.
    fhir_id = models.CharField(max_length=64, blank=True, default="")
    # Which source's Patient resource took that id ("<source label>|<its id in the source>");
    # each further source keeps a Patient resource of its own, linked to that one.
    primary_source = models.CharField(max_length=255, blank=True, default="")
    # The patient's key sealed under the master key; NULL once erased (crypto-shredding).
    wrapped_key = models.BinaryField(null=True, blank=True, editable=False)
    master_key_id = models.CharField(max_length=32, blank=True, default="")
    # The patient's pseudonymous chain identity: a secp256k1 key sealed under the patient's own key
    # (so erasure destroys it too); the address is what the chain sees.
    wallet_address = models.CharField(max_length=42, blank=True, default="")
    wallet_ciphertext = models.BinaryField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["fhir_id"], condition=~models.Q(fhir_id=""), name="records_patient_fhir_id_unique"
            ),
            # A live record has a key; an erased one has none, and says when.
            models.CheckConstraint(
                condition=(models.Q(erased_at__isnull=True) & models.Q(wrapped_key__isnull=False))
                | (models.Q(erased_at__isnull=False) & models.Q(wrapped_key__isnull=True)),
                name="records_patient_key_xor_erased",
            ),
        ]

    def __str__(self) -> str:
        return f"Patient {self.id}{' (erased)' if self.erased_at else ''}"

    @property
    def is_erased(self) -> bool:
        return self.erased_at is not None


class Resource(models.Model):
    """One FHIR resource's identity; its content lives in ResourceVersion rows."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: records_resource_patient_type leads with it.
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="resources", db_index=False)
    resource_type = models.CharField(max_length=64)
    fhir_id = models.CharField(max_length=64)
    current_version = models.PositiveIntegerField()
    # Keyed hash (under a key derived from the patient's key) of the current content, so an
    # unchanged re-import is detected without decrypting. Mirrors the current version row.
    current_hash = models.BinaryField(max_length=32, editable=False)
    # MAC (under a key derived from the patient's key) naming the current version as the newest
    # (records.envelope.head_mac): a rolled-back current_version fails it on read.
    head_mac = models.BinaryField(max_length=32, editable=False, default=b"")
    # The current version row's ciphertext and wrapped data key, written with it by ingest (its only writer),
    # so a page of current versions (records.selectors.pages) reads no join to its versions: a third of a
    # search's statement. Sealed under the same binding, so it cannot say anything the version row does not.
    # NULL (a row written before the copy existed): read from the version row instead.
    current_ciphertext = models.BinaryField(null=True, editable=False)
    current_wrapped_data_key = models.BinaryField(null=True, editable=False)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            # fhir_id first: ingest looks ids up by fhir_id alone (they are unique in practice across types).
            models.UniqueConstraint(fields=["fhir_id", "resource_type"], name="records_resource_identity_unique"),
        ]
        indexes = [models.Index(fields=["patient", "resource_type"], name="records_resource_patient_type")]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.fhir_id}"


class ResourceVersion(models.Model):
    id = models.BigAutoField(primary_key=True)
    # No index of its own: records_version_unique leads with it.
    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="versions", db_index=False)
    version = models.PositiveIntegerField()
    # nonce || AES-256-GCM(canonical JSON); AAD binds patient, type, id, version (records.envelope).
    ciphertext = models.BinaryField(editable=False)
    # Empty for every version written now (sealed under the patient's content subkey); older rows:
    # the version's own data key sealed under the patient's key, with the same binding.
    wrapped_data_key = models.BinaryField(editable=False)
    content_hash = models.BinaryField(max_length=32, editable=False)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resource", "version"], name="records_version_unique"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="records_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.resource_id} v{self.version}"


class IndexToken(models.Model):
    """Blind index: one keyed HMAC token per (patient, kind, value) a resource's current version carries.

    Tokens include the patient id in their input, so equal codes of two patients
    give unrelated tokens; they are deleted with the patient's key on erasure.
    """

    # Two indexes and no surrogate key: (resource, token) serves reindexing and erasure,
    # (token, resource) answers a search without touching the table. Ingest writes ~5 a resource.
    pk = models.CompositePrimaryKey("resource", "token")
    # No database foreign key: these rows are derived and rebuilt with their resource, in the
    # same transaction, and a search only ever reaches them through a join to Resource, so an
    # orphan could never surface. The per-row check cost a quarter of ingest on PostgreSQL.
    resource = models.ForeignKey(
        Resource, on_delete=models.CASCADE, related_name="index_tokens", db_index=False, db_constraint=False
    )
    token = models.BinaryField(max_length=16, editable=False)

    class Meta:
        indexes = [models.Index(fields=["token", "resource"], name="records_indextoken_token")]

    def __str__(self) -> str:
        return f"token for {self.resource_id}"
