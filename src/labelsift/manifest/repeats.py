"""Which sources may be written more than once, from a fixed-size Bloom filter: a manifest with no
repeated source is confirmed without any index.
"""

from __future__ import annotations

import numpy as np


class SeenFilter:
    """A fixed-size blocked Bloom filter over sources (32 MiB whatever the manifest's length).

    `add_many` answers which keys may have been added before (by an earlier batch, or earlier in
    this one): never a false "no", rarely a false "yes" (about one in a million sources, a hundred
    in five million), so a manifest with no repeated source is confirmed without any index at all.
    Each key sets six bits of one 64-bit word (one memory access per key); the bit work runs in
    numpy, a batch at a time.
    """

    def __init__(self, words: int = 1 << 22) -> None:
        self._words = np.zeros(words, dtype=np.uint64)
        self._mask = np.uint64(words - 1)

    def add_many(self, keys: list[bytes]) -> list[int]:
        hashes = np.array([hash(key) for key in keys], dtype=np.int64)
        digest = hashes.view(np.uint64)
        word = (digest & self._mask).astype(np.intp)
        bits = np.zeros(len(keys), dtype=np.uint64)
        for shift in range(28, 64, 6):  # six 6-bit fields above the word's index
            bits |= np.left_shift(np.uint64(1), (digest >> np.uint64(shift)) & np.uint64(63))
        seen = self._words[word] & bits == bits
        _, firsts = np.unique(hashes, return_index=True)  # a key twice in this batch: seen
        again = np.ones(len(keys), dtype=bool)
        again[firsts] = False
        np.bitwise_or.at(self._words, word, bits)  # ufunc.at: keys of one batch may share a word
        return [int(i) for i in np.flatnonzero(seen | again)]


class RepeatFinder:
    """Sources that may have been written before, from the filter, a batch of keys at a time."""

    def __init__(self) -> None:
        self._seen = SeenFilter()
        self._keys: list[bytes] = []
        self.flagged: set[str] = set()
        self.decoded_lines = 0  # record lines not in the writer's form (`key_of` had to decode them)

    def add(self, key: bytes) -> None:
        self._keys.append(key)
        if len(self._keys) >= 4096:
            self.flush()

    def flush(self) -> None:
        keys, self._keys = self._keys, []
        if keys:
            # keys are raw bytes (`key_of`): one that is not UTF-8 fails later, at its line
            self.flagged.update(keys[i].decode("utf-8", "surrogateescape") for i in self._seen.add_many(keys))
