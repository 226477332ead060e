"""The access log against the chain: every anchor on chain matches the database, and proofs into anchored roots.

The chain is the reference, not the database's anchor rows: each AccessLogAnchored event says "the
entries from the previous anchor's size up to size - 1 have this root". For every event the checkpoints
in the database must tile that range, their leaves must give that root, and each checkpoint's own
root must be its leaves' root; otherwise the event is an `anchor-mismatch` naming the checkpoints. The
events must fold to the contract's `anchorHead` (else the node left one out), and an anchor the
database marks as anchored must be on chain. A database restored from an old backup, or with its tail
cut off, shows up as a chain anchor for entries the database no longer has.

The database side (entries against checkpoints, signatures) is audit.verification's job; this module only
adds what the chain can say. It never raises for an unreachable chain: it says so, and the caller
decides (the command exits 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from audit.anchoring import range_leaves
from audit.leaves import entry_leaf_hash
from audit.merkle import inclusion_path, merkle_root, verify_inclusion_path
from audit.models import AccessLogAnchor, AccessLogEntry, AnchorStatus
from healthledger.errors import AccessLogTampered, ChainError, ChainUnavailable
from ledger.client import ANCHOR_GENESIS_HEAD, Anchor, ChainClient, anchor_head_after, chain_client
from ledger.selectors import deployment_current

ANCHOR_MISMATCH = "anchor-mismatch"


@dataclass(frozen=True)
class AnchorProblem:
    """A difference between the chain's anchors and the database, with the checkpoints it concerns."""

    kind: str
    detail: str
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoint_ids: tuple[int, ...] = ()
    tx_hash: str = ""

    def describe(self) -> str:
        where = f"seq {self.first_seq}..{self.last_seq}" if self.first_seq is not None else "the anchors"
        which = ", ".join(str(i) for i in self.checkpoint_ids)
        cps = f", checkpoint{'s' if len(self.checkpoint_ids) > 1 else ''} {which}" if which else ""
        tx = f", tx {self.tx_hash}" if self.tx_hash else ""
        return f"{self.kind} at {where}{cps}{tx}: {self.detail}"


@dataclass(frozen=True)
class ChainCheck:
    """What the chain said about the log. `reachable` False means nothing on chain was checked."""

    reachable: bool
    anchors_on_chain: int = 0
    anchored_entries: int = 0  # entries the chain's anchors cover, from seq 0
    problems: tuple[AnchorProblem, ...] = field(default_factory=tuple)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems


@dataclass(frozen=True)
class ChainAnchor:
    """One AccessLogAnchored event with the range of entries the chain says it covers."""

    first_seq: int
    last_seq: int
    root: bytes
    head: bytes
    block: int
    tx: str


def chain_anchors(client: ChainClient) -> tuple[list[ChainAnchor], bytes]:
    """Every anchor event since the contract was deployed, with its range, and the contract's anchorHead."""
    deployment = deployment_current(chain_id=client.chain_id, artifact_hash=client.artifact.hash)
    events: list[Anchor] = client.anchors(from_block=deployment.block if deployment is not None else 0)
    head = client.anchor_head()
    found: list[ChainAnchor] = []
    start = 0
    for event in events:
        found.append(ChainAnchor(start, event.size - 1, event.root, event.head, event.block, event.tx))
        start = max(start, event.size)
    return found, head


def _fold_problems(anchors: list[ChainAnchor], head: bytes) -> list[AnchorProblem]:
    running = ANCHOR_GENESIS_HEAD
    for anchor in anchors:
        running = anchor_head_after(running, anchor.root, anchor.last_seq + 1)
        if running != anchor.head:
            return [
                AnchorProblem(
                    ANCHOR_MISMATCH,
                    "the anchor events before this one do not chain to its head: the node left one out",
                    anchor.first_seq,
                    anchor.last_seq,
                    tx_hash=anchor.tx,
                )
            ]
    if running != head:
        return [AnchorProblem(ANCHOR_MISMATCH, "the anchor events read do not add up to the contract's anchorHead")]
    return []


def _range_problem(anchor: ChainAnchor) -> AnchorProblem | None:
    if anchor.last_seq < anchor.first_seq:
        return AnchorProblem(ANCHOR_MISMATCH, "an anchor whose size does not grow the anchored log", tx_hash=anchor.tx)
    try:
        leaves, checkpoints = range_leaves(first_seq=anchor.first_seq, last_seq=anchor.last_seq)
    except AccessLogTampered:
        return AnchorProblem(
            ANCHOR_MISMATCH,
            "the chain anchored these entries; the database's checkpoints do not cover them as sealed",
            anchor.first_seq,
            anchor.last_seq,
            tx_hash=anchor.tx,
        )
    ids = tuple(checkpoint.pk for checkpoint in checkpoints)
    start = anchor.first_seq
    # A checkpoint whose stored root is not its leaves' root disagrees with what was anchored, whoever is right.
    off = tuple(
        checkpoint.pk
        for checkpoint in checkpoints
        if merkle_root(leaves[checkpoint.first_seq - start : checkpoint.last_seq - start + 1]) != bytes(checkpoint.root)
    )
    if off:
        return AnchorProblem(
            ANCHOR_MISMATCH,
            "the checkpoint's root is not the root of the leaves the chain anchored",
            anchor.first_seq,
            anchor.last_seq,
            off,
            anchor.tx,
        )
    if merkle_root(leaves) != anchor.root:
        return AnchorProblem(
            ANCHOR_MISMATCH,
            f"the chain anchored root {anchor.root.hex()[:16]}…, the database's checkpoints give another",
            anchor.first_seq,
            anchor.last_seq,
            ids,
            anchor.tx,
        )
    return None


def _unanchored_rows(rows: list[AccessLogAnchor], on_chain: dict[int, ChainAnchor]) -> list[AnchorProblem]:
    problems: list[AnchorProblem] = []
    for row in rows:
        found = on_chain.get(row.last_seq)
        if found is None or found.first_seq != row.first_seq or found.root != bytes(row.root):
            problems.append(
                AnchorProblem(
                    ANCHOR_MISMATCH,
                    "the database says this range is anchored; the chain has no such anchor",
                    row.first_seq,
                    row.last_seq,
                    (row.checkpoint_id,),
                    row.tx_hash,
                )
            )
    return problems


def access_log_verify_chain(*, client: ChainClient | None = None) -> ChainCheck:
    """Check the database's checkpoints against every anchor on chain (see the module docstring)."""
    # Read the rows first: a row marked anchored after this read cannot be missing from the events read after.
    anchored_rows = list(AccessLogAnchor.objects.filter(status=AnchorStatus.ANCHORED).order_by("first_seq"))
    try:
        client = client or chain_client()
        anchors, head = chain_anchors(client)
    except (ChainUnavailable, ChainError) as exc:
        return ChainCheck(reachable=False, error=f"{type(exc).__name__}: {exc}")
    problems = _fold_problems(anchors, head)
    for anchor in anchors:
        problem = _range_problem(anchor)
        if problem is not None:
            problems.append(problem)
    problems += _unanchored_rows(anchored_rows, {anchor.last_seq: anchor for anchor in anchors})
    return ChainCheck(
        reachable=True,
        anchors_on_chain=len(anchors),
        anchored_entries=anchors[-1].last_seq + 1 if anchors else 0,
        problems=tuple(problems),
    )


# --- Inclusion proofs into anchored roots -------------------------------------------------

VERIFIED = "verified"
PENDING = "pending"  # not sealed, not anchored, or the anchor is still on its way to the chain
FAILED = "failed"  # the entry does not prove into the root on chain: it, or its checkpoint, changed
UNAVAILABLE = "unavailable"  # the chain could not be asked


@dataclass(frozen=True)
class AnchoredProof:
    """An entry's RFC 6962 inclusion proof into the root anchored on chain, and whether it holds.

    `chain_root`, `tx_hash` and `block_number` come from the chain's event, never from the database.
    """

    entry_id: int
    status: str
    detail: str
    seq: int | None = None
    leaf_hash: bytes = b""
    leaf_index: int | None = None
    tree_size: int | None = None
    audit_path: tuple[bytes, ...] = ()
    first_seq: int | None = None
    last_seq: int | None = None
    chain_root: bytes | None = None
    tx_hash: str = ""
    block_number: int | None = None

    @property
    def verified(self) -> bool:
        return self.status == VERIFIED

    def as_dict(self) -> dict[str, object]:
        return {
            "entry_id": self.entry_id,
            "status": self.status,
            "verified": self.verified,
            "detail": self.detail,
            "seq": self.seq,
            "leaf_hash": self.leaf_hash.hex(),
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "audit_path": [node.hex() for node in self.audit_path],
            "anchor": {
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
                "chain_root": self.chain_root.hex() if self.chain_root is not None else None,
                "tx_hash": self.tx_hash,
                "block_number": self.block_number,
            },
        }


def access_log_anchored_proof(*, entry: AccessLogEntry, client: ChainClient | None = None) -> AnchoredProof:
    """Prove one entry, as it reads now, into the root the chain holds for its range.

    Verified only when the proof's root equals the root read from the chain's AccessLogAnchored event
    whose range (from the chain: the previous anchor's size up to this one's) contains the entry.
    """
    if entry.seq is None:
        return AnchoredProof(entry.pk, PENDING, "the entry is not sealed into a checkpoint yet")
    seq = entry.seq
    row = (
        AccessLogAnchor.objects.exclude(status=AnchorStatus.FAILED)
        .filter(first_seq__lte=seq, last_seq__gte=seq)
        .first()
    )
    if row is None:
        return AnchoredProof(entry.pk, PENDING, "the entry's checkpoint is not anchored yet", seq=seq)
    leaf = entry_leaf_hash(entry)
    try:
        leaves, _ = range_leaves(first_seq=row.first_seq, last_seq=row.last_seq)
    except AccessLogTampered as exc:
        return AnchoredProof(entry.pk, FAILED, str(exc), seq=seq, leaf_hash=leaf)
    index = seq - row.first_seq
    path = tuple(inclusion_path(leaves, index))
    proof = AnchoredProof(
        entry.pk,
        PENDING,
        "",
        seq=seq,
        leaf_hash=leaf,
        leaf_index=index,
        tree_size=len(leaves),
        audit_path=path,
        first_seq=row.first_seq,
        last_seq=row.last_seq,
    )
    try:
        anchors, _ = chain_anchors(client or chain_client())
    except (ChainUnavailable, ChainError) as exc:
        return _with(proof, UNAVAILABLE, f"the chain could not be asked ({type(exc).__name__})")
    found = next((a for a in anchors if a.first_seq <= seq <= a.last_seq), None)
    if found is None:
        if row.status == AnchorStatus.PENDING:
            return _with(proof, PENDING, "the anchor is on its way to the chain")
        return _with(proof, FAILED, "the database says this entry is anchored; no anchor on chain covers it")
    proved = (found.first_seq, found.last_seq) == (row.first_seq, row.last_seq) and verify_inclusion_path(
        leaf, index, len(leaves), path, found.root
    )
    return AnchoredProof(
        entry.pk,
        VERIFIED if proved else FAILED,
        "the entry is in the root anchored on chain" if proved else "the entry does not prove into the chain's root",
        seq=seq,
        leaf_hash=leaf,
        leaf_index=index,
        tree_size=len(leaves),
        audit_path=path,
        first_seq=found.first_seq,
        last_seq=found.last_seq,
        chain_root=found.root,
        tx_hash=found.tx,
        block_number=found.block,
    )


def _with(proof: AnchoredProof, status: str, detail: str) -> AnchoredProof:
    return replace(proof, status=status, detail=detail)
