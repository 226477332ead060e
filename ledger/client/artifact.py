"""ConsentRegistry's committed compiler output: its ABI, its bytecode, and how to recognise it on chain."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from eth_utils import function_abi_to_4byte_selector

ARTIFACT_PATH = Path(__file__).resolve().parent.parent / "contracts" / "ConsentRegistry.json"


@dataclass(frozen=True)
class Artifact:
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    immutable_ranges: tuple[tuple[int, int], ...] = ()

    def runs_at(self, code: bytes) -> bool:
        """Whether on-chain runtime code is this artifact's, ignoring the bytes the constructor fills in."""
        expected = bytearray(bytes.fromhex(self.deployed_bytecode.removeprefix("0x")))
        if len(code) != len(expected):
            return False
        actual = bytearray(code)
        for start, length in self.immutable_ranges:
            actual[start : start + length] = expected[start : start + length]
        return actual == expected

    @cached_property
    def hash(self) -> str:
        """sha256 of the creation bytecode: which contract a Deployment row runs."""
        return hashlib.sha256(bytes.fromhex(self.bytecode.removeprefix("0x"))).hexdigest()

    @cached_property
    def errors_by_selector(self) -> dict[bytes, dict[str, Any]]:
        errors: list[Any] = [item for item in self.abi if item["type"] == "error"]
        return {function_abi_to_4byte_selector(item): item for item in errors}


def load_artifact(path: Path = ARTIFACT_PATH) -> Artifact:
    """The committed compiler output (see contracts/compile.js)."""
    raw = json.loads(path.read_text())
    return Artifact(
        abi=raw["abi"],
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
        immutable_ranges=tuple((ref["start"], ref["length"]) for ref in raw.get("immutableReferences", [])),
    )
