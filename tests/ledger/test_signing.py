"""EIP-712 hashing in Python agrees with the contract, and the commitments hide what they commit to."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_typed_data

from ledger import signing
from tests.ledger.conftest import sign


def test_grant_id_is_the_same_in_python_eth_account_and_solidity(chain, make_grant):
    grant = make_grant()
    typed = signing.grant_typed_data(grant, chain_id=chain.chain_id, verifying_contract=chain.address)

    python_id = signing.grant_id(grant)

    assert python_id == chain.hash_grant(grant)
    assert python_id == encode_typed_data(full_message=typed).body  # EIP-712 hashStruct(message)
    assert signing.terms_hash(grant) == bytes(chain.contract.functions.hashTerms(grant.terms_abi_tuple()).call())


def test_type_hashes_and_domain_separator_match_the_contract(chain, make_grant):
    typed = signing.grant_typed_data(make_grant(), chain_id=chain.chain_id, verifying_contract=chain.address)
    functions = chain.contract.functions

    assert bytes(functions.GRANT_TYPEHASH().call()) == signing.GRANT_TYPEHASH
    assert bytes(functions.TERMS_TYPEHASH().call()) == signing.TERMS_TYPEHASH
    assert bytes(functions.REVOKE_TYPEHASH().call()) == signing.REVOKE_TYPEHASH
    assert bytes(functions.domainSeparator().call()) == encode_typed_data(full_message=typed).header


def test_a_grant_signature_recovers_the_patient_address(chain, make_grant, alice_key):
    grant = make_grant()
    typed = signing.grant_typed_data(grant, chain_id=chain.chain_id, verifying_contract=chain.address)

    signature = sign(chain, grant, alice_key)

    assert Account.recover_message(encode_typed_data(full_message=typed), signature=signature.to_bytes()) == (
        signing.patient_address(private_key=alice_key)
    )


def test_a_scope_commitment_depends_on_its_secret_salt_and_on_every_byte_of_the_scope():
    salt = bytes(range(32))
    scope = signing.canonical_scope_bytes({"types": ["Observation"], "purpose": "TREAT", "actions": ["read"]})

    commitment = signing.scope_commitment(commitment_salt=salt, scope=scope)

    assert scope == b'{"actions":["read"],"purpose":"TREAT","types":["Observation"]}'
    assert commitment == signing.scope_commitment(commitment_salt=salt, scope=scope)
    assert commitment != signing.scope_commitment(commitment_salt=bytes(32), scope=scope)
    assert commitment != signing.scope_commitment(commitment_salt=salt, scope=scope.replace(b"TREAT", b"HRESCH"))


def test_two_otherwise_identical_grants_get_distinct_ids_through_their_public_salt(make_grant):
    grant = make_grant()
    twin = signing.Grant(
        patient=grant.patient,
        grantee=grant.grantee,
        scope_commitment=grant.scope_commitment,
        not_before=grant.not_before,
        not_after=grant.not_after,
        salt=signing.new_salt(),
    )

    assert signing.grant_id(twin) != signing.grant_id(grant)
