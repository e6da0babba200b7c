"""RFC 9162's tree, proofs and verifiers (domain/merkle.py): every published vector of
transparency-dev/merkle (tests/vectors/rfc9162, Apache License 2.0) is accepted or refused as it
says, and the proofs made here verify against the roots made here, for every pair of sizes up to
a tree of 40 leaves, and stop verifying when any byte of them changes."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tasktrail.domain.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc9162"


def _cases(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(VECTORS))) for f in files]


def _bytes(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def _proof(values: list[str] | None) -> list[bytes]:
    return [_bytes(value) for value in values or []]


def test_every_published_vector_is_read() -> None:
    assert len(_cases("inclusion")) + len(_cases("consistency")) == 196


@pytest.mark.parametrize("case", _cases("inclusion"))
def test_an_inclusion_vector_is_accepted_or_refused_as_published(case: dict[str, Any]) -> None:
    def verify() -> None:
        verify_inclusion(
            case["leafIdx"],
            case["treeSize"],
            _bytes(case["leafHash"]),
            _proof(case["proof"]),
            _bytes(case["root"]),
        )

    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify()
    else:
        verify()


@pytest.mark.parametrize("case", _cases("consistency"))
def test_a_consistency_vector_is_accepted_or_refused_as_published(case: dict[str, Any]) -> None:
    def verify() -> None:
        verify_consistency(
            case["size1"],
            case["size2"],
            _proof(case["proof"]),
            _bytes(case["root1"]),
            _bytes(case["root2"]),
        )

    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify()
    else:
        verify()


LEAVES = [leaf_hash(hashlib.sha256(str(n).encode()).digest()) for n in range(40)]


def test_the_hashes_are_rfc_9162s() -> None:
    """The RFC's definitions, written out for three leaves: MTH = H(1 || H(1 || a || b) || c)."""
    a, b, c = (leaf_hash(data) for data in (b"a", b"b", b"c"))
    assert a == hashlib.sha256(b"\x00a").digest()
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert root_hash([a, b, c]) == node_hash(node_hash(a, b), c)
    assert root_hash([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root_hash([a]) == a


def test_every_inclusion_proof_made_here_verifies_and_a_changed_byte_does_not() -> None:
    for size in range(1, len(LEAVES) + 1):
        tree, root = LEAVES[:size], root_hash(LEAVES[:size])
        for index in range(size):
            proof = inclusion_proof(tree, index)
            verify_inclusion(index, size, tree[index], proof, root)
            for at in range(len(proof)):
                bent = [*proof[:at], bytes([proof[at][0] ^ 1]) + proof[at][1:], *proof[at + 1 :]]
                with pytest.raises(ProofError):
                    verify_inclusion(index, size, tree[index], bent, root)
            if size > 1:
                with pytest.raises(ProofError):
                    verify_inclusion((index + 1) % size, size, tree[index], proof, root)


def test_every_consistency_proof_made_here_verifies_and_a_changed_byte_does_not() -> None:
    for second in range(1, len(LEAVES) + 1):
        second_root = root_hash(LEAVES[:second])
        for first in range(1, second + 1):
            first_root = root_hash(LEAVES[:first])
            proof = consistency_proof(LEAVES[:second], first)
            verify_consistency(first, second, proof, first_root, second_root)
            for at in range(len(proof)):
                bent = [*proof[:at], bytes([proof[at][0] ^ 1]) + proof[at][1:], *proof[at + 1 :]]
                with pytest.raises(ProofError):
                    verify_consistency(first, second, bent, first_root, second_root)
            if first < second:
                other = root_hash([*LEAVES[: first - 1], leaf_hash(b"rewritten")])
                with pytest.raises(ProofError):
                    verify_consistency(first, second, proof, other, second_root)
