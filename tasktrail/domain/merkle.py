"""The Merkle tree of RFC 9162 over a list of leaves: its hash, and inclusion and consistency
proofs with their verification (sections 2.1.1 to 2.1.4).

A leaf's hash is SHA-256(0x00 || data), a node's SHA-256(0x01 || left || right); a tree of n > 1
leaves splits at k, the largest power of two below n. The log's leaves are its events, each
event's 32 raw `hash` bytes its data. Here the tree is computed from the list of leaf hashes;
where they are kept (tiles) is the storage's business.

The verifiers follow the RFC's algorithms step by step, and add the two guards the RFC leaves to
its callers: every hash that is hashed or proven is 32 bytes (two roots of one tree size are
only compared), and the tree of no leaves has the hash of the empty string. They raise
`ProofError` and return nothing: a proof either holds or it does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """The proof does not show what it is asked to."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """k: the largest power of two smaller than `size` (> 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_hash(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the leaves' hashes (2.1.1)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root_hash(leaves[:k]), root_hash(leaves[k:]))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) (2.1.3.1): the hashes that take leaf `index` to the root of `leaves`."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(leaves[:k], index), root_hash(leaves[k:])]
    return [*inclusion_proof(leaves[k:], index - k), root_hash(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], first: int) -> list[bytes]:
    """PROOF(m, D[n]) (2.1.4.1): that the tree of the first `first` leaves is a prefix of the
    tree of all of `leaves`."""
    if not 0 < first <= len(leaves):
        raise ValueError(f"no consistency proof from {first} to {len(leaves)}")
    return _subproof(leaves, first, whole=True)


def _subproof(leaves: Sequence[bytes], first: int, *, whole: bool) -> list[bytes]:
    if first == len(leaves):
        return [] if whole else [root_hash(leaves)]
    k = _split(len(leaves))
    if first <= k:
        return [*_subproof(leaves[:k], first, whole=whole), root_hash(leaves[k:])]
    return [*_subproof(leaves[k:], first - k, whole=False), root_hash(leaves[:k])]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """That `leaf` is leaf `index` of the tree of `size` leaves whose hash is `root` (2.1.3.2)."""
    _require_hashes(leaf, root, *proof)
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("the inclusion proof leads to another root")


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> None:
    """That the tree of `first` leaves with hash `first_root` is a prefix of the tree of
    `second` leaves with hash `second_root` (2.1.4.2)."""
    if not 0 <= first <= second:
        raise ProofError(f"a tree of {first} leaves cannot precede one of {second}")
    if first == second:
        # One tree: its two roots must be the same value, whatever it is; nothing is hashed.
        if proof:
            raise ProofError("trees of one size need no proof")
        if first_root != second_root:
            raise ProofError("two trees of the same size have different roots")
        if first == 0 and first_root != EMPTY_ROOT:
            raise ProofError("the tree of no leaves has another root")
        return
    _require_hashes(first_root, second_root, *proof)
    if first == 0:
        # Every tree extends the empty one: nothing to prove, and no proof is taken.
        if proof:
            raise ProofError("consistency with the empty tree needs no proof")
        if first_root != EMPTY_ROOT:
            raise ProofError("the tree of no leaves has another root")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: its root is a node of the new tree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the trees are deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the trees are deep")
    if fr != first_root:
        raise ProofError("the consistency proof leads to another first root")
    if sr != second_root:
        raise ProofError("the consistency proof leads to another second root")


def _require_hashes(*hashes: bytes) -> None:
    for value in hashes:
        if len(value) != HASH_SIZE:
            raise ProofError(f"a hash is {HASH_SIZE} bytes, not {len(value)}")
