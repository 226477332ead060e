"""The chain seam's connection: a web3 provider, the operator key, and the ConsentRegistry address."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any, Self

from django.conf import settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import Web3
from web3.types import RPCEndpoint

from healthledger.errors import ChainUnavailable
from healthledger.lib.keyfiles import load_or_create_key
from ledger.client.artifact import Artifact, load_artifact
from ledger.client.errors import chain_errors

OPERATOR_KEY_FILE = "chain-operator.key"


def _http_provider(url: str, timeout: float) -> Any:
    """A JSON-RPC provider that asks the node its chain id once.

    web3 asks eth_chainId before every call and transaction it builds, which doubled the requests of a
    grant check. Only eth_chainId is cached: blocks, receipts and state must follow the chain, reorgs included.
    """
    return Web3.HTTPProvider(
        url,
        request_kwargs={"timeout": timeout},
        exception_retry_configuration=None,  # the relay owns retries; a health check must not hang
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
    )


def operator_key_from_settings() -> bytes:
    """HEALTHLEDGER_CHAIN_OPERATOR_KEY (0x-hex, or urlsafe base64), else a key file under KEYS_DIR."""
    value = settings.HEALTHLEDGER_CHAIN_OPERATOR_KEY.strip()
    if value.startswith("0x"):
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError as exc:
            raise ChainUnavailable("HEALTHLEDGER_CHAIN_OPERATOR_KEY is not valid hex") from exc
        if len(raw) != 32:
            raise ChainUnavailable("HEALTHLEDGER_CHAIN_OPERATOR_KEY must be 32 bytes")
        return raw
    return load_or_create_key(env_value=value, filename=OPERATOR_KEY_FILE, name="chain operator key")


class ChainConnection:
    """ConsentRegistry on one chain, spoken to by the operator account: what the reads and writes share."""

    def __init__(
        self,
        *,
        w3: Web3,
        operator_key: bytes,
        address: str | None = None,
        artifact: Artifact | None = None,
        receipt_timeout: float = 120.0,
    ) -> None:
        self.w3 = w3
        self.operator: LocalAccount = Account.from_key(operator_key)
        self.artifact = artifact or load_artifact()
        self.receipt_timeout = receipt_timeout
        self._address: str | None = to_checksum_address(address) if address else None

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_settings(cls) -> Self:
        """CHAIN_RPC_URL when set, else the in-process EVM when CHAIN_BACKEND == "tester"."""
        timeout = float(settings.CHAIN_TIMEOUT_SECONDS)
        if settings.CHAIN_RPC_URL:
            provider: Any = _http_provider(settings.CHAIN_RPC_URL, timeout)
        elif settings.CHAIN_BACKEND == "tester":
            provider = Web3.EthereumTesterProvider()
        else:
            raise ChainUnavailable("no chain configured: set CHAIN_RPC_URL (or CHAIN_BACKEND=tester)")
        return cls(w3=Web3(provider), operator_key=operator_key_from_settings(), receipt_timeout=timeout * 12)

    @classmethod
    def for_url(cls, url: str, *, operator_key: bytes, timeout: float = 10.0) -> Self:
        """A client for one JSON-RPC endpoint with an explicit operator key (benchmarks, integration tests)."""
        return cls(w3=Web3(_http_provider(url, timeout)), operator_key=operator_key, receipt_timeout=timeout * 12)

    @cached_property
    def chain_id(self) -> int:
        with self._errors():
            return int(self.w3.eth.chain_id)

    @property
    def address(self) -> str:
        """The contract address: given at construction, else the newest matching Deployment row."""
        if self._address is None:
            from ledger.selectors import deployment_current

            deployment = deployment_current(chain_id=self.chain_id, artifact_hash=self.artifact.hash)
            if deployment is None:
                raise ChainUnavailable("ConsentRegistry is not deployed on this chain: run manage.py deploy_contracts")
            self._address = deployment.address
        return self._address

    def use(self, address: str) -> None:
        """Point this client at a contract address (after deploying, or to read another deployment)."""
        self._address = to_checksum_address(address)

    @property
    def contract(self) -> Any:
        # Building a contract object parses the whole ABI (milliseconds): once per address, not per call.
        address = to_checksum_address(self.address)
        cached = self.__dict__.get("_contract")
        if cached is None or cached.address != address:
            cached = self.__dict__["_contract"] = self.w3.eth.contract(address=address, abi=self.artifact.abi)
        return cached

    @contextmanager
    def _errors(self) -> Iterator[None]:
        with chain_errors(self.artifact):
            yield
