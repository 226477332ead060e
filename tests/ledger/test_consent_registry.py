"""ConsentRegistry against the in-process EVM: what it records, and every way a grant or revocation is refused."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak

from ledger import signing
from ledger.client import ChainClient, ContractReverted
from tests.ledger.conftest import DAY, MakeGrant, chain_now, register_key, sign, sign_revoke, travel_to

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_a_patient_signed_grant_relayed_by_the_operator_is_recorded_and_active(chain, make_grant, alice_key):
    grant = make_grant()
    ref = chain.record_grant(grant, sign(chain, grant, alice_key))
    grant_id = signing.grant_id(grant)

    assert chain.is_active(grant_id, grant.grantee, grant.scope_commitment) is True
    state = chain.grant_state(grant_id)
    assert (state.recorded, state.revoked, state.not_before, state.not_after) == (
        True,
        False,
        grant.not_before,
        grant.not_after,
    )
    [event] = chain.grant_events()
    assert (event.kind, event.grant_id, event.patient, event.grantee, event.scope_commitment, event.tx) == (
        "recorded",
        grant_id,
        grant.patient,
        grant.grantee,
        grant.scope_commitment,
        ref.hash,
    )


def test_is_active_is_false_for_another_grantee_or_another_scope(chain, make_grant, alice_key, mallory_key):
    grant = make_grant()
    chain.record_grant(grant, sign(chain, grant, alice_key))
    grant_id = signing.grant_id(grant)
    other_grantee = signing.patient_address(private_key=mallory_key)
    other_scope = signing.scope_commitment(commitment_salt=signing.new_salt(), scope=b'{"types":["Condition"]}')

    assert chain.is_active(grant_id, other_grantee, grant.scope_commitment) is False
    assert chain.is_active(grant_id, grant.grantee, other_scope) is False
    assert chain.is_active(keccak(b"never recorded"), grant.grantee, grant.scope_commitment) is False


def test_is_active_follows_the_window_from_not_before_up_to_but_excluding_not_after(chain, make_grant, alice_key):
    start = chain_now(chain) + 1000
    grant = make_grant(not_before=start, not_after=start + DAY)
    chain.record_grant(grant, sign(chain, grant, alice_key))  # a grant may be recorded before it starts
    grant_id = signing.grant_id(grant)

    def active() -> bool:
        return chain.is_active(grant_id, grant.grantee, grant.scope_commitment)

    assert active() is False
    travel_to(chain, start - 1)
    assert active() is False
    travel_to(chain, start)
    assert active() is True
    travel_to(chain, start + DAY - 1)
    assert active() is True
    travel_to(chain, start + DAY)
    assert active() is False


def test_a_grant_signed_for_another_chain_id_is_rejected(chain, make_grant, alice_key):
    grant = make_grant()
    foreign = signing.grant_sign(
        grant, private_key=alice_key, chain_id=chain.chain_id + 1, verifying_contract=chain.address
    )

    with pytest.raises(ContractReverted) as refused:
        chain.record_grant(grant, foreign)

    assert refused.value.reason == "InvalidSigner"
    assert refused.value.permanent is True
    assert chain.grant_state(signing.grant_id(grant)).recorded is False


def test_a_grant_signed_for_another_contract_is_rejected_here_and_accepted_there(chain, make_grant, alice_key):
    first = chain.address
    second = chain.deploy().address
    grant = make_grant()
    for_second = sign(chain, grant, alice_key)  # the client now points at the second contract
    chain.use(first)

    with pytest.raises(ContractReverted) as refused:
        chain.record_grant(grant, for_second)
    assert refused.value.reason == "InvalidSigner"

    chain.use(second)
    register_key(chain, alice_key)  # each deployment holds its own key registry
    chain.record_grant(grant, for_second)
    assert chain.is_active(signing.grant_id(grant), grant.grantee, grant.scope_commitment) is True


def test_the_malleable_twin_of_a_valid_signature_is_rejected(chain, make_grant, alice_key):
    grant = make_grant()
    signature = sign(chain, grant, alice_key)
    high_s = SECP256K1_N - int.from_bytes(signature.s, "big")
    twin = signing.Signature(v=55 - signature.v, r=signature.r, s=high_s.to_bytes(32, "big"))
    # The twin is a valid secp256k1 signature by Alice: only the low-s rule tells them apart.
    digest = keccak(b"\x19\x01" + chain.contract.functions.domainSeparator().call() + signing.grant_id(grant))
    recovered = keys.Signature(
        vrs=(twin.v - 27, int.from_bytes(twin.r, "big"), high_s)
    ).recover_public_key_from_msg_hash(digest)
    assert recovered.to_checksum_address() == grant.patient

    with pytest.raises(ContractReverted) as refused:
        chain.record_grant(grant, twin)

    assert refused.value.reason == "ECDSAInvalidSignatureS"
    assert str(refused.value) == f"ConsentRegistry reverted: ECDSAInvalidSignatureS(0x{twin.s.hex()})"
    chain.record_grant(grant, signature)  # the canonical signature still works: nothing was consumed


def test_a_grant_signed_by_anyone_but_its_patient_is_rejected(chain, make_grant, mallory_key):
    grant = make_grant()

    with pytest.raises(ContractReverted) as refused:
        chain.record_grant(grant, sign(chain, grant, mallory_key))

    assert refused.value.reason == "InvalidSigner"
    assert str(refused.value) == "ConsentRegistry reverted: InvalidSigner()"


def test_recording_the_same_grant_twice_is_rejected(chain, make_grant, alice_key):
    grant = make_grant()
    signature = sign(chain, grant, alice_key)
    chain.record_grant(grant, signature)

    with pytest.raises(ContractReverted) as refused:
        chain.record_grant(grant, signature)

    assert refused.value.reason == "GrantExists"
    assert str(refused.value) == f"ConsentRegistry reverted: GrantExists(0x{signing.grant_id(grant).hex()})"


def test_a_grant_whose_window_has_already_ended_is_rejected(chain, make_grant, alice_key):
    now = chain_now(chain)
    grant = make_grant(not_before=now - DAY, not_after=now)

    with pytest.raises(ContractReverted) as refused:
        chain.record_grant(grant, sign(chain, grant, alice_key))

    assert refused.value.reason == "GrantExpired"
    assert str(refused.value) == f"ConsentRegistry reverted: GrantExpired(0x{signing.grant_id(grant).hex()})"


def test_a_grant_that_ends_before_it_starts_is_rejected(chain, make_grant, alice_key):
    grant = make_grant()
    object.__setattr__(grant, "not_after", grant.not_before)  # the Python type refuses to build one

    with pytest.raises(ContractReverted) as refused:
        chain.record_grant(grant, sign(chain, grant, alice_key))

    assert refused.value.reason == "InvalidWindow"


def test_a_batch_of_grants_is_recorded_in_one_transaction(chain, make_grant, alice_key):
    grants = [make_grant() for _ in range(5)]

    ref = chain.record_grants([(grant, sign(chain, grant, alice_key)) for grant in grants])

    assert [chain.is_active(signing.grant_id(g), g.grantee, g.scope_commitment) for g in grants] == [True] * 5
    events = chain.grant_events()
    assert [(e.kind, e.grant_id, e.tx) for e in events] == [("recorded", signing.grant_id(g), ref.hash) for g in grants]


def test_a_batch_with_one_bad_signature_records_none_of_its_grants(chain, make_grant, alice_key, mallory_key):
    grants = [make_grant() for _ in range(3)]
    signatures = [
        sign(chain, grants[0], alice_key),
        sign(chain, grants[1], mallory_key),
        sign(chain, grants[2], alice_key),
    ]

    with pytest.raises(ContractReverted) as refused:
        chain.record_grants(list(zip(grants, signatures, strict=True)))

    assert refused.value.reason == "InvalidSigner"
    assert [chain.grant_state(signing.grant_id(g)).recorded for g in grants] == [False, False, False]


def test_a_patient_signed_revocation_ends_the_grant_at_once(chain, make_grant, alice_key):
    grant = make_grant()
    chain.record_grant(grant, sign(chain, grant, alice_key))
    grant_id = signing.grant_id(grant)

    ref = chain.revoke(grant, sign_revoke(chain, grant, alice_key))

    assert chain.is_active(grant_id, grant.grantee, grant.scope_commitment) is False
    assert chain.grant_state(grant_id).revoked is True
    assert [(e.kind, e.grant_id) for e in chain.grant_events()] == [("recorded", grant_id), ("revoked", grant_id)]
    assert chain.grant_events()[1].tx == ref.hash


@pytest.mark.parametrize("signer", ["grantee", "operator", "stranger"])
def test_a_revocation_signed_by_anyone_but_the_patient_is_rejected(chain, make_grant, alice_key, mallory_key, signer):
    grantee_key = mallory_key
    grant = make_grant(grantee=signing.patient_address(private_key=grantee_key))
    chain.record_grant(grant, sign(chain, grant, alice_key))
    key = {"grantee": grantee_key, "operator": bytes(chain.operator.key), "stranger": Account.create().key}[signer]

    with pytest.raises(ContractReverted) as refused:
        chain.revoke(grant, sign_revoke(chain, grant, bytes(key)))

    assert refused.value.reason == "InvalidSigner"
    assert chain.is_active(signing.grant_id(grant), grant.grantee, grant.scope_commitment) is True


def test_the_grant_signature_cannot_be_reused_as_a_revocation(chain, make_grant, alice_key):
    grant = make_grant()
    grant_signature = sign(chain, grant, alice_key)
    chain.record_grant(grant, grant_signature)

    with pytest.raises(ContractReverted) as refused:
        chain.revoke(grant, grant_signature)

    assert refused.value.reason == "InvalidSigner"


def test_revoking_twice_is_rejected(chain, make_grant, alice_key):
    grant = make_grant()
    chain.record_grant(grant, sign(chain, grant, alice_key))
    revocation = sign_revoke(chain, grant, alice_key)
    chain.revoke(grant, revocation)

    with pytest.raises(ContractReverted) as refused:
        chain.revoke(grant, revocation)

    assert refused.value.reason == "GrantAlreadyRevoked"


def test_revoking_a_grant_that_was_never_recorded_is_rejected(chain, make_grant, alice_key):
    grant = make_grant()

    with pytest.raises(ContractReverted) as refused:
        chain.revoke(grant, sign_revoke(chain, grant, alice_key))

    assert refused.value.reason == "UnknownGrant"
    assert str(refused.value) == f"ConsentRegistry reverted: UnknownGrant(0x{signing.grant_id(grant).hex()})"


def test_the_chain_sees_no_scope_only_its_salted_commitment(chain: ChainClient, make_grant: MakeGrant, alice_key):
    grant = make_grant()
    ref = chain.record_grant(grant, sign(chain, grant, alice_key))
    calldata = bytes(chain.w3.eth.get_transaction(ref.hash)["input"])  # type: ignore[arg-type]

    assert b"Observation" not in calldata
    assert b"TREAT" not in calldata
    assert grant.scope_commitment in calldata
