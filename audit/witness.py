"""A witness of the sealed log: the latest signed checkpoint, kept outside the database, and proof that each
new one extends it.

The witness holds the tree head it last accepted (size and RFC 6962 root over every sealed leaf from seq 0,
plus the newest checkpoint's signature) in a file the database cannot reach (`AUDIT_WITNESS_FILE`; in
production on another machine or another operator's storage). Each run takes the log's current tree head,
asks for the RFC 6962 consistency proof from the witnessed size, verifies it against the witnessed root, and
only then moves on. A sealed tail that was truncated (entries, checkpoints and anchors deleted, the seal
state rewound) or rewritten is caught here without the chain, as soon as the witness has seen it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from audit.merkle import consistency_proof, merkle_root, split_leaves, verify_consistency
from audit.models import AccessLogCheckpoint
from audit.signing import audit_key, checkpoint_message, signature_valid
from healthledger.errors import IntegrityFailure


@dataclass(frozen=True)
class TreeHead:
    """What the witness keeps: the size and root of the whole sealed log, and the checkpoint that ends it."""

    size: int
    root: str  # hex
    checkpoint_id: int
    checkpoint_signature: str  # hex
    key_fingerprint: str
    witnessed_at: str


@dataclass(frozen=True)
class WitnessResult:
    previous: TreeHead | None
    current: TreeHead
    proof_hashes: int


def _leaves() -> tuple[list[bytes], AccessLogCheckpoint | None]:
    leaves: list[bytes] = []
    last: AccessLogCheckpoint | None = None
    for checkpoint in AccessLogCheckpoint.objects.order_by("first_seq").iterator():
        if checkpoint.first_seq != len(leaves):
            raise IntegrityFailure(f"checkpoints are not contiguous at seq {len(leaves)}")
        leaves.extend(split_leaves(bytes(checkpoint.leaves)))
        if len(leaves) != checkpoint.last_seq + 1:
            raise IntegrityFailure(f"checkpoint {checkpoint.pk} holds the wrong number of leaves")
        last = checkpoint
    return leaves, last


def _signed(checkpoint: AccessLogCheckpoint) -> bool:
    message = checkpoint_message(
        first_seq=checkpoint.first_seq,
        last_seq=checkpoint.last_seq,
        root=bytes(checkpoint.root),
        prev_root=bytes(checkpoint.prev_root),
        created_at=checkpoint.created_at,
    )
    return signature_valid(message, bytes(checkpoint.signature), public=audit_key().public)


def witness_read(path: Path) -> TreeHead | None:
    if not path.exists():
        return None
    return TreeHead(**json.loads(path.read_text()))


def _write(path: Path, head: TreeHead) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all: a witness interrupted mid-write must not forget what it saw.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".witness-")
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(head), out, indent=1)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def access_log_witness(*, path: Path | None = None) -> WitnessResult:
    """Check the sealed log extends the witnessed tree head, then witness the new head. IntegrityFailure if not."""
    path = path or Path(settings.AUDIT_WITNESS_FILE)
    previous = witness_read(path)
    leaves, last = _leaves()
    if last is None:
        if previous is not None:
            raise IntegrityFailure(f"the witness saw {previous.size} sealed entries; the log now has none")
        raise IntegrityFailure("nothing sealed yet: nothing to witness")
    if not _signed(last):
        raise IntegrityFailure(f"checkpoint {last.pk} (the newest) does not carry a valid audit-key signature")
    root = merkle_root(leaves)
    proof: list[bytes] = []
    if previous is not None:
        if len(leaves) < previous.size:
            raise IntegrityFailure(
                f"the sealed log shrank: the witness saw {previous.size} entries, the log now has {len(leaves)}"
            )
        if len(leaves) > previous.size:
            proof = consistency_proof(leaves, previous.size)
        if not verify_consistency(previous.size, len(leaves), bytes.fromhex(previous.root), root, proof):
            raise IntegrityFailure(
                f"the sealed log is not an extension of the witnessed one (size {previous.size}): history was rewritten"
            )
    head = TreeHead(
        size=len(leaves),
        root=root.hex(),
        checkpoint_id=last.pk,
        checkpoint_signature=bytes(last.signature).hex(),
        key_fingerprint=last.key_fingerprint,
        witnessed_at=timezone.now().isoformat(),
    )
    _write(path, head)
    return WitnessResult(previous=previous, current=head, proof_hashes=len(proof))
