"""A patient's signing device for clients that are not a browser: the demo seed, tests and benches.

It does what portal/static_src/keys.js does in the patient's browser, and nothing more: holds a key in memory,
writes it as a 24-word BIP-39 phrase whose entropy IS the key (keys.js phraseOf / keyOfPhrase), and signs the
typed data the server hands out (registration, grant, revocation). No server module may import it (an
import-linter contract says so): the operator never signs in a patient's name. Only seed_demo acts as the demo
patients' device, then drops their keys.
"""

from __future__ import annotations

import secrets

from eth_account import Account
from eth_account.hdaccount.mnemonic import Mnemonic

from ledger import signing

PHRASE_WORDS = 24


class BadPhrase(ValueError):
    """Not a valid 24-word English BIP-39 recovery phrase."""


def phrase_of(private_key: bytes) -> str:
    """The 24-word recovery phrase of a 32-byte key (the key is the phrase's entropy), as keys.js phraseOf."""
    if len(private_key) != 32:
        raise ValueError("a signing key is 32 bytes")
    return Mnemonic().to_mnemonic(private_key)


def key_of_phrase(phrase: str) -> bytes:
    """The key a recovery phrase holds (its 32-byte entropy), as keys.js keyOfPhrase; BadPhrase otherwise."""
    words = " ".join(phrase.strip().lower().split())
    mnemonic = Mnemonic()
    if len(words.split(" ")) != PHRASE_WORDS or not mnemonic.is_mnemonic_valid(words):
        raise BadPhrase("not a valid recovery phrase of 24 words")
    bits = 0
    for word in words.split(" "):
        bits = (bits << 11) | mnemonic.wordlist.index(word)
    # 24 words are 264 bits: 256 of entropy, then an 8-bit checksum.
    return (bits >> 8).to_bytes(32, "big")


class Device:
    """One patient's key held in memory, signing EIP-712 typed data the way her browser would."""

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != 32:
            raise ValueError("a signing key is 32 bytes")
        self._key = private_key
        self.address = str(Account.from_key(private_key).address)

    @classmethod
    def new(cls) -> Device:
        """A fresh key from the operating system's randomness (the browser uses WebCrypto's)."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_phrase(cls, phrase: str) -> Device:
        """The device restored from a recovery phrase, as the portal's "Recover my key" does."""
        return cls(key_of_phrase(phrase))

    @property
    def phrase(self) -> str:
        """The key's recovery phrase: shown once to its holder, never logged."""
        return phrase_of(self._key)

    def sign(self, typed: dict[str, object]) -> str:
        """A 0x-hex signature over typed data (what the portal posts back as `signature`)."""
        return "0x" + signing.typed_data_sign(typed, private_key=self._key).to_bytes().hex()

    def __repr__(self) -> str:
        # Never the key: a device printed in a traceback shows only its address.
        return f"Device(address={self.address})"
