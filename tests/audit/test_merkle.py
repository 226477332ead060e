from __future__ import annotations

from hashlib import sha256

import pytest

from audit.merkle import (
    EMPTY_ROOT,
    inclusion_path,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_inclusion,
    verify_inclusion_path,
)

# The Certificate Transparency reference vectors (RFC 6962 test data, as shipped with
# the CT and Trillian Merkle tree tests): leaf inputs and the root of the first n leaves.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATHS = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 6962 section 2.1 writes it: split at the largest power of two below n."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def leaves_of(size: int) -> list[bytes]:
    return [leaf_hash(f"entry {i}".encode()) for i in range(size)]


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_certificate_transparency_vectors(size: int) -> None:
    leaves = [leaf_hash(data) for data in CT_LEAVES[:size]]
    assert merkle_root(leaves).hex() == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size"), sorted(CT_PATHS))
def test_inclusion_paths_match_the_certificate_transparency_vectors(index: int, size: int) -> None:
    leaves = [leaf_hash(data) for data in CT_LEAVES[:size]]
    assert [node.hex() for node in inclusion_path(leaves, index)] == CT_PATHS[(index, size)]


def test_the_empty_tree_has_the_hash_of_the_empty_string() -> None:
    assert merkle_root([]) == EMPTY_ROOT == sha256(b"").digest()


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(b"a") == sha256(b"\x00a").digest()
    assert node_hash(a, b) == sha256(b"\x01" + a + b).digest()
    assert leaf_hash(a + b) != node_hash(a, b)


@pytest.mark.parametrize("size", range(1, 70))
def test_the_level_by_level_root_equals_the_rfc_split_for_every_size(size: int) -> None:
    leaves = leaves_of(size)
    assert merkle_root(leaves) == reference_root(leaves)


@pytest.mark.parametrize("size", range(1, 34))
def test_every_inclusion_proof_verifies_for_trees_of_1_to_33_leaves(size: int) -> None:
    leaves = leaves_of(size)
    root = merkle_root(leaves)
    for index in range(size):
        path = inclusion_path(leaves, index)
        assert verify_inclusion_path(leaves[index], index, size, path, root) is True


@pytest.mark.parametrize("size", range(2, 34))
def test_inclusion_proofs_fail_for_a_wrong_leaf_a_wrong_index_or_a_wrong_root(size: int) -> None:
    leaves = leaves_of(size)
    root = merkle_root(leaves)
    wrong_root = leaf_hash(b"some other tree")
    for index in range(size):
        path = inclusion_path(leaves, index)
        other = (index + 1) % size
        assert verify_inclusion_path(leaves[other], index, size, path, root) is False
        assert verify_inclusion_path(leaf_hash(b"forged"), index, size, path, root) is False
        assert verify_inclusion_path(leaves[index], index, size, path, wrong_root) is False
        assert verify_inclusion_path(leaves[index], other, size, path, root) is False


def test_malformed_proofs_are_rejected_not_crashed_on() -> None:
    leaves = leaves_of(5)
    root = merkle_root(leaves)
    path = inclusion_path(leaves, 2)
    assert root_from_inclusion(leaves[2], 2, 5, path) == root
    assert root_from_inclusion(leaves[2], 5, 5, path) is None  # index outside the tree
    assert root_from_inclusion(leaves[2], 2, 5, [*path, path[0]]) is None  # too long
    assert root_from_inclusion(leaves[2], 2, 5, path[:-1]) is None  # too short
    assert root_from_inclusion(leaves[2], 2, 5, [path[0][:31], *path[1:]]) is None  # a truncated hash
    with pytest.raises(IndexError):
        inclusion_path(leaves, 5)
