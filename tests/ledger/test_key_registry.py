"""ConsentRegistry's key registry in the in-process EVM: the chain, not the operator's database, says which key
signs for an account; a rotation needs the registered key; a reset waits in public and can be refused."""

from __future__ import annotations

import secrets

import pytest

from ledger import signing
from ledger.client import ChainClient, ContractReverted
from tests.ledger.conftest import DAY, MakeGrant, chain_now, register_key, sign, sign_revoke, travel_to

RESET_DELAY = 7 * DAY


def _typed(chain: ChainClient, account: bytes, key: str, previous: str) -> dict[str, object]:
    return signing.registration_typed_data(
        account=account, key=key, previous=previous, chain_id=chain.chain_id, verifying_contract=chain.address
    )


def rotate(chain: ChainClient, account: bytes, old_key: bytes, new_key: bytes, *, co_signer: bytes | None = None):  # type: ignore[no-untyped-def]
    """Rotate the account from old_key to new_key; the previous signature is co_signer's (default: old_key's)."""
    old, new = signing.patient_address(private_key=old_key), signing.patient_address(private_key=new_key)
    typed = _typed(chain, account, new, old)
    change = signing.KeyChange(
        account=account,
        key=new,
        previous=old,
        signature=signing.typed_data_sign(typed, private_key=new_key),
        previous_signature=signing.typed_data_sign(typed, private_key=co_signer or old_key),
    )
    return chain.register_key(change)


def request_reset(chain: ChainClient, account: bytes, current: str, new_key: bytes) -> None:
    new = signing.patient_address(private_key=new_key)
    typed = _typed(chain, account, new, current)
    change = signing.KeyChange(
        account=account, key=new, previous=current, signature=signing.typed_data_sign(typed, private_key=new_key)
    )
    chain._send(chain.key_reset_call(change), wait=True)


def _account(chain: ChainClient, key: bytes) -> bytes:
    """The key's account: the make_grant fixture has registered Alice's key already."""
    account = chain.account_of(signing.patient_address(private_key=key))
    return account if account != bytes(32) else register_key(chain, key)


def _grant_for(make_grant: MakeGrant, key: bytes, **window: int) -> signing.Grant:
    grant = make_grant(**window)
    return signing.Grant(
        patient=signing.patient_address(private_key=key),
        grantee=grant.grantee,
        scope_commitment=grant.scope_commitment,
        not_before=grant.not_before,
        not_after=grant.not_after,
        salt=grant.salt,
    )


def test_a_registered_key_is_what_the_chain_names_for_its_account(chain: ChainClient, alice_key: bytes):
    account = register_key(chain, alice_key)
    address = signing.patient_address(private_key=alice_key)

    assert chain.key_of(account) == address
    assert chain.account_of(address) == account
    assert bytes(chain.contract.functions.hashKeyRegistration(account, address, signing.ZERO_ADDRESS).call()) == (
        signing.key_registration_hash(account=account, key=address, previous=signing.ZERO_ADDRESS)
    )


def test_a_grant_from_a_key_no_account_registered_is_refused_by_the_contract(chain: ChainClient, make_grant):
    stranger = secrets.token_bytes(32)  # the operator's own key, say, named as the patient
    grant = _grant_for(make_grant, stranger)

    with pytest.raises(ContractReverted) as refused:
        chain.record_grant(grant, sign(chain, grant, stranger))

    assert refused.value.reason == "KeyNotCurrent"
    assert chain.grant_state(signing.grant_id(grant)).recorded is False


def test_only_the_operator_relays_a_first_registration_and_an_account_is_registered_once(
    chain: ChainClient, alice_key: bytes, mallory_key: bytes
):
    account = register_key(chain, alice_key)

    with pytest.raises(ContractReverted) as taken:
        register_key(chain, mallory_key, account=account)  # the operator cannot swap her key by registering again
    assert taken.value.reason == "AccountRegistered"
    assert chain.key_of(account) == signing.patient_address(private_key=alice_key)


def test_a_first_registration_not_signed_by_its_key_is_refused(chain: ChainClient, alice_key: bytes, mallory_key):
    account = secrets.token_bytes(32)
    alice = signing.patient_address(private_key=alice_key)
    typed = _typed(chain, account, alice, signing.ZERO_ADDRESS)
    forged = signing.KeyChange(
        account=account,
        key=alice,
        previous=signing.ZERO_ADDRESS,
        signature=signing.typed_data_sign(typed, private_key=mallory_key),
    )

    with pytest.raises(ContractReverted) as refused:
        chain.register_key(forged)

    assert refused.value.reason == "InvalidSigner"
    assert chain.key_of(account) == signing.ZERO_ADDRESS


def test_a_rotation_not_signed_by_the_registered_key_is_refused(chain: ChainClient, alice_key: bytes, mallory_key):
    account = register_key(chain, alice_key)

    with pytest.raises(ContractReverted) as refused:
        rotate(chain, account, alice_key, mallory_key, co_signer=mallory_key)

    assert refused.value.reason == "InvalidSigner"
    assert chain.key_of(account) == signing.patient_address(private_key=alice_key)


def test_after_a_rotation_the_old_key_grants_nothing_and_its_grants_survive_revocable_by_the_new_key(
    chain: ChainClient, make_grant: MakeGrant, alice_key: bytes
):
    account = _account(chain, alice_key)
    kept = _grant_for(make_grant, alice_key)
    chain.record_grant(kept, sign(chain, kept, alice_key))
    new_key = secrets.token_bytes(32)

    rotate(chain, account, alice_key, new_key)
    late = _grant_for(make_grant, alice_key)
    with pytest.raises(ContractReverted) as refused:
        chain.record_grant(late, sign(chain, late, alice_key))
    fresh = _grant_for(make_grant, new_key)
    chain.record_grant(fresh, sign(chain, fresh, new_key))

    assert refused.value.reason == "KeyNotCurrent"
    assert chain.key_of(account) == signing.patient_address(private_key=new_key)
    assert chain.is_active(signing.grant_id(kept), kept.grantee, kept.scope_commitment) is True
    with pytest.raises(ContractReverted) as stranger:
        chain.revoke(kept, sign_revoke(chain, kept, secrets.token_bytes(32)))
    assert stranger.value.reason == "InvalidSigner"
    chain.revoke(kept, sign_revoke(chain, kept, new_key))
    assert chain.grant_state(signing.grant_id(kept)).revoked is True
    with pytest.raises(ContractReverted) as reused:
        rotate(chain, account, new_key, alice_key)  # a key once registered is never registered again
    assert reused.value.reason == "KeyUsed"


def test_a_reset_waits_seven_days_in_public_then_replaces_a_lost_key(
    chain: ChainClient, make_grant: MakeGrant, alice_key: bytes
):
    account = _account(chain, alice_key)
    alice = signing.patient_address(private_key=alice_key)
    kept = _grant_for(make_grant, alice_key, not_after=chain_now(chain) + 30 * DAY)
    chain.record_grant(kept, sign(chain, kept, alice_key))
    new_key = secrets.token_bytes(32)
    new = signing.patient_address(private_key=new_key)

    request_reset(chain, account, alice, new_key)
    pending, ready_at = chain.pending_key_reset(account)
    requested = chain.contract.events.KeyResetRequested.get_logs(from_block=0)
    with pytest.raises(ContractReverted) as early:
        chain._send(chain.key_reset_complete_call(account), wait=True)

    assert (pending, ready_at - chain_now(chain)) == (new, RESET_DELAY)
    assert [(e["args"]["account"], e["args"]["key"], e["args"]["current"]) for e in requested] == [
        (account, new, alice)
    ]
    assert early.value.reason == "ResetNotReady"
    assert chain.key_of(account) == alice  # nothing changed yet

    travel_to(chain, ready_at)
    chain._send(chain.key_reset_complete_call(account), wait=True)

    assert chain.key_of(account) == new
    [event] = [e for e in chain.contract.events.KeyRegistered.get_logs(from_block=0) if e["args"]["key"] == new]
    assert (event["args"]["previous"], event["args"]["reset"]) == (alice, True)  # visible as a reset
    assert chain.is_active(signing.grant_id(kept), kept.grantee, kept.scope_commitment) is True
    chain.revoke(kept, sign_revoke(chain, kept, new_key))  # the new key ends what the lost key granted
    late = _grant_for(make_grant, alice_key)
    with pytest.raises(ContractReverted) as refused:
        chain.record_grant(late, sign(chain, late, alice_key))
    assert refused.value.reason == "KeyNotCurrent"


def test_the_registered_key_cancels_a_reset_it_did_not_ask_for(chain: ChainClient, alice_key: bytes):
    account = register_key(chain, alice_key)
    alice = signing.patient_address(private_key=alice_key)
    intruder = secrets.token_bytes(32)
    request_reset(chain, account, alice, intruder)
    pending, ready_at = chain.pending_key_reset(account)

    cancel_typed = signing.key_reset_cancel_typed_data(
        account=account, key=pending, chain_id=chain.chain_id, verifying_contract=chain.address
    )
    with pytest.raises(ContractReverted) as forged:
        chain._send(
            chain.key_reset_cancel_call(account, signing.typed_data_sign(cancel_typed, private_key=intruder)), wait=True
        )
    chain._send(
        chain.key_reset_cancel_call(account, signing.typed_data_sign(cancel_typed, private_key=alice_key)), wait=True
    )
    travel_to(chain, ready_at)

    assert forged.value.reason == "InvalidSigner"
    assert chain.pending_key_reset(account) == (signing.ZERO_ADDRESS, 0)
    with pytest.raises(ContractReverted) as nothing:
        chain._send(chain.key_reset_complete_call(account), wait=True)
    assert nothing.value.reason == "NoPendingReset"
    assert chain.key_of(account) == alice


def test_a_rotation_by_the_registered_key_drops_a_pending_reset(chain: ChainClient, alice_key: bytes):
    account = register_key(chain, alice_key)
    request_reset(chain, account, signing.patient_address(private_key=alice_key), secrets.token_bytes(32))
    new_key = secrets.token_bytes(32)

    rotate(chain, account, alice_key, new_key)

    assert chain.pending_key_reset(account) == (signing.ZERO_ADDRESS, 0)
    assert chain.key_of(account) == signing.patient_address(private_key=new_key)


def test_only_the_operator_requests_a_reset_or_a_first_registration(chain: ChainClient, alice_key: bytes):
    account = register_key(chain, alice_key)
    new_key = secrets.token_bytes(32)
    new = signing.patient_address(private_key=new_key)
    typed = _typed(chain, account, new, signing.patient_address(private_key=alice_key))
    signature = signing.typed_data_sign(typed, private_key=new_key).to_bytes()
    first = _typed(chain, secrets.token_bytes(32), new, signing.ZERO_ADDRESS)
    stranger = {"from": chain.w3.eth.accounts[1]}  # a funded account of the test node, not the operator

    with pytest.raises(ContractReverted) as reset, chain._errors():
        chain.contract.functions.requestKeyReset(account, new, signature).call(stranger)
    with pytest.raises(ContractReverted) as squat, chain._errors():
        chain.contract.functions.registerKey(
            first["message"]["account"], new, signing.typed_data_sign(first, private_key=new_key).to_bytes()
        ).call(stranger)

    assert (reset.value.reason, squat.value.reason) == ("NotOperator", "NotOperator")
    assert chain.pending_key_reset(account) == (signing.ZERO_ADDRESS, 0)
