"""AES-128-CTR pseudo-random generator producing numpy words.

Why AES-CTR: both holders of a pairwise key expand it into identical streams
without talking, which makes zero-sharings, masks and shared permutations free
of communication. numpy's default RNG is predictable and is never used for
anything secret.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY_BYTES = 16
_zeros = np.zeros(0, dtype=np.uint8)


def _zero_bytes(nbytes: int) -> np.ndarray:
    """A shared read-only buffer of zeros, grown on demand (AES input)."""
    global _zeros
    if len(_zeros) < nbytes:
        _zeros = np.zeros(max(nbytes, 2 * len(_zeros)), dtype=np.uint8)
        _zeros.flags.writeable = False
    return _zeros[:nbytes]


class PRG:
    """Keystream of AES-128 in counter mode; draws are consumed in order.

    Two parties holding the same key stay in lockstep as long as they draw the
    same sizes in the same order — every protocol in this package does.
    """

    def __init__(self, key: bytes, nonce: bytes = b"\0" * 16):
        if len(key) != KEY_BYTES:
            raise ValueError(f"PRG key must be {KEY_BYTES} bytes, got {len(key)}")
        self._enc = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()

    def bytes_into(self, out: np.ndarray) -> None:
        """Fill a contiguous array with keystream bytes (no extra allocation)."""
        raw = out.reshape(-1).view(np.uint8)
        nbytes = raw.nbytes
        if nbytes == 0:
            return
        # update_into needs len(out) >= len(in) + 15; CTR writes exactly len(in).
        buf = np.empty(nbytes + 15, dtype=np.uint8)
        written = self._enc.update_into(_zero_bytes(nbytes), buf)
        assert written == nbytes
        raw[:] = buf[:nbytes]

    def words(self, n: int, dtype=np.uint64) -> np.ndarray:
        """n pseudo-random unsigned words of the given dtype (default uint64)."""
        dt = np.dtype(dtype)
        nbytes = n * dt.itemsize
        if nbytes == 0:
            return np.zeros(n, dtype=dt)
        buf = np.empty(nbytes + 15, dtype=np.uint8)
        self._enc.update_into(_zero_bytes(nbytes), buf)
        return buf[:nbytes].view(dt)

    def permutation(self, n: int) -> np.ndarray:
        """A uniformly random permutation of range(n) (argsort of 64-bit keys).

        Ties among 64-bit keys have probability < n^2 / 2^65 and only bias the
        order of the tied pair, so the permutation is statistically uniform.
        """
        keys = self.words(n)
        # With distinct keys every sort gives this one order, so the fast unstable sort is safe
        # (both holders must derive the same permutation); ties (p < n^2 / 2^65) fall back to stable.
        order = np.argsort(keys)
        ranked = keys[order]
        if n > 1 and np.any(ranked[1:] == ranked[:-1]):
            return np.argsort(keys, kind="stable")
        return order


def bound_key(key: bytes, context: bytes) -> bytes:
    """HKDF-SHA256 of `key` for `context` (the query and its agreed plan hash, Channel.binding).

    Pairwise keys and dealt seeds are expanded only through this, so parties that do not run
    the same plan of the same query derive unrelated streams: their shares never combine
    into the values (the zero-sharings and masks do not cancel)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=b"fedsql prg key\n" + context).derive(key)


def fresh_key() -> bytes:
    """A new AES key from the OS CSPRNG."""
    return os.urandom(KEY_BYTES)


def private_prg() -> PRG:
    """A PRG whose key nobody else knows (for dealing and masking)."""
    return PRG(fresh_key())
