"""What the search index keeps of a row to forget it later, compressed. Pure: no I/O.

SQLite 3.40's contentless FTS5 forgets a row only when handed text that gives the row's
words (search_db). What is kept is `search_text.forget_form` of the text (each distinct
word once, sorted, and as many words in all), compressed with raw DEFLATE and a preset
dictionary: the words most of a batch of the index's own sessions hold, in sorted order
(`train`, once, from the first big batch written). Sorted words against sorted common
words match in long runs: at 100,000 generated sessions the kept text is 0.25x the
message text, against 0.45x for the text itself through zlib (docs/search.md).

A dictionary is named by a digest of its words, so whoever compresses (the worker
process, the daemon) and whoever writes never need to agree on a number beforehand: a
row names the dictionary it was compressed with, and the file keeps every one used (two
at most after a build: a batch prepared before the first one's commit makes its own).
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

# Measured at 20,000 generated sessions: a 4 KB dictionary compresses as well as 8 to 32 KB ones
# (words further back in DEFLATE's window cost more to point at), and one made from 64 sessions
# as well as one made from 5,000.
DICTIONARY_BYTES = 4096
TRAIN_MIN = 32  # sessions a batch needs to make a dictionary from (the full pass's batches have more)
NO_DICTIONARY = 0
_LEVEL = 3  # measured at 20,000: 6 is 4 % smaller (0.246x against 0.256x) and takes 60 % longer (54 against 33 µs a session)
_RAW = -15  # raw DEFLATE: no zlib header or checksum (the row's dictionary names what it needs)


class Dictionary(NamedTuple):
    """A preset dictionary, named by (the first 7 bytes of) the SHA-256 of its words."""

    id: int
    words: bytes


def dictionary_of(words: bytes) -> Dictionary:
    return Dictionary(int.from_bytes(hashlib.sha256(words).digest()[:7], "big") or 1, words)


def train(forms: Sequence[bytes]) -> Dictionary | None:
    """A dictionary of the words most of *forms* hold (at least two), sorted; None for too few forms."""
    if len(forms) < TRAIN_MIN:
        return None
    counts: Counter[bytes] = Counter()
    for form in forms:
        counts.update(set(form.split(b" ")))
    chosen: list[bytes] = []
    size = 0
    for word, holders in counts.most_common():
        size += len(word) + 1
        if holders < 2 or size > DICTIONARY_BYTES:
            break
        chosen.append(word)
    if not chosen:
        return None
    return dictionary_of(b" ".join(sorted(chosen)))


@functools.lru_cache(maxsize=4)
def _compressor(words: bytes) -> zlib._Compress:
    # Setting a dictionary hashes all of it: done once, then copied for each row.
    return zlib.compressobj(_LEVEL, zlib.DEFLATED, _RAW, zdict=words)


def pack(data: bytes, dictionary: Dictionary | None) -> tuple[int, bytes]:
    """(the dictionary's id or NO_DICTIONARY, *data* compressed with it)."""
    if dictionary is None:
        plain = zlib.compressobj(_LEVEL, zlib.DEFLATED, _RAW)
        return NO_DICTIONARY, plain.compress(data) + plain.flush()
    squeeze = _compressor(dictionary.words).copy()
    return dictionary.id, squeeze.compress(data) + squeeze.flush()


def unpack(blob: bytes, words: bytes | None) -> bytes:
    """What *blob* holds, compressed with dictionary *words* (None: none); zlib.error if it is not that."""
    inflate = zlib.decompressobj(_RAW, zdict=words) if words else zlib.decompressobj(_RAW)
    data = inflate.decompress(blob) + inflate.flush()
    if not inflate.eof:
        raise zlib.error("the kept text ends early")
    return data
