"""Seeds derived from keys, the same in every process and DataLoader worker.

A run's random draws come from a base seed and the keys that say which draw it is (a case id, a
variant number, a training step, a DDP rank), never from global state:

>>> from synth.seeding import derive_seed, rng_for
>>> rng = rng_for(0, "volume-117", 3)            # a numpy Generator
>>> derive_seed(0, "volume-117", 3) == derive_seed(0, "volume-117", 3)
True

Strings enter through CRC-32 of their UTF-8 bytes, not ``hash()``, which Python salts per process.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["derive_seed", "rng_for", "seed_sequence"]

Key = int | str


def seed_sequence(*keys: Key) -> np.random.SeedSequence:
    """numpy's ``SeedSequence`` over the keys (ints >= 0 as they are, strings by CRC-32)."""
    entropy = []
    for key in keys:
        if isinstance(key, str):
            entropy.append(zlib.crc32(key.encode("utf-8")))
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 0:
            entropy.append(int(key))
        else:
            raise TypeError(f"seed keys must be ints >= 0 or strings; got {key!r}")
    return np.random.SeedSequence(entropy)


def rng_for(*keys: Key) -> np.random.Generator:
    """A numpy ``Generator`` seeded by the keys (``default_rng([k1, k2, ...])`` for int keys)."""
    return np.random.default_rng(seed_sequence(*keys))


def derive_seed(*keys: Key, bits: int = 63) -> int:
    """One integer seed from the keys: 63 bits (fits a signed int64, e.g. ``insert --seed``) or 32
    bits (what ``SeedSequence.generate_state`` gives by default)."""
    sequence = seed_sequence(*keys)
    if bits == 32:
        return int(sequence.generate_state(1, dtype=np.uint32)[0])
    if bits == 63:
        return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    raise ValueError(f"bits must be 32 or 63; got {bits}")
