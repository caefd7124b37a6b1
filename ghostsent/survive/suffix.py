"""Exact-substring deduplication as Lee et al. (2022, "Deduplicating Training Data Makes Language Models
Better") do it, with a suffix array.

Their tool (google-research/deduplicate-text-datasets, which datatrove's ExactSubstr stages call as an
external Rust program) concatenates all documents with unique separators, builds a suffix array, finds
every substring of at least `threshold` tokens that occurs more than once (`self-similar`), merges them
into ranges in which every token belongs to such a repeat (`collect`), and strikes those ranges from
every document, all occurrences included ("completely striking them from the dataset").

The same here over token ids, in numpy: prefix doubling for the suffix array, Kasai's algorithm for the
longest common prefixes, and a difference array to mark the ranges. Adjacent suffixes in the array with
a common prefix >= threshold are exactly the repeated substrings (a repeat's occurrences sort next to
each other), and marking `threshold` tokens from each start covers the whole repeated region.
The tests check this against a brute-force reference.
"""
from __future__ import annotations

import numpy as np


def suffix_array(seq: "np.ndarray | list[int]") -> np.ndarray:
    """Start offsets of all suffixes of `seq` in sorted order (prefix doubling, O(n log^2 n))."""
    a = np.asarray(seq, dtype=np.int64)
    n = len(a)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rank = np.unique(a, return_inverse=True)[1].astype(np.int64).reshape(-1)
    k = 1
    while True:
        second = np.full(n, -1, dtype=np.int64)
        if k < n:
            second[: n - k] = rank[k:]
        sa = np.lexsort((second, rank))
        r1, r2 = rank[sa], second[sa]
        new = np.empty(n, dtype=np.int64)
        new[0] = 0
        new[1:] = np.cumsum((r1[1:] != r1[:-1]) | (r2[1:] != r2[:-1]))
        rank = np.empty(n, dtype=np.int64)
        rank[sa] = new
        if new[-1] == n - 1 or k >= n:
            return sa
        k *= 2


def lcp_array(seq: "np.ndarray | list[int]", sa: np.ndarray) -> np.ndarray:
    """lcp[i] = length of the common prefix of suffixes sa[i-1] and sa[i] (lcp[0] = 0); Kasai et al."""
    a = np.asarray(seq, dtype=np.int64).tolist()
    n = len(a)
    lcp = [0] * n
    rank = [0] * n
    for i, s in enumerate(sa.tolist()):
        rank[s] = i
    sa_l = sa.tolist()
    h = 0
    for i in range(n):
        r = rank[i]
        if r == 0:
            h = 0
            continue
        j = sa_l[r - 1]
        while i + h < n and j + h < n and a[i + h] == a[j + h]:
            h += 1
        lcp[r] = h
        if h:
            h -= 1
    return np.asarray(lcp, dtype=np.int64)


def duplicated_mask(seq: "np.ndarray | list[int]", threshold: int) -> np.ndarray:
    """True for every position covered by a substring of >= `threshold` tokens that occurs at least
    twice in `seq` (overlapping occurrences included)."""
    if threshold < 1:
        raise ValueError("threshold must be >= 1")
    a = np.asarray(seq, dtype=np.int64)
    n = len(a)
    if n == 0:
        return np.zeros(0, dtype=bool)
    sa = suffix_array(a)
    lcp = lcp_array(a, sa)
    hit = np.nonzero(lcp >= threshold)[0]
    starts = np.concatenate([sa[hit], sa[hit - 1]])
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, starts, 1)
    np.add.at(diff, np.minimum(starts + threshold, n), -1)
    return np.cumsum(diff[:n]) > 0


def strike_duplicates(docs: "list[list[int]]", threshold: int) -> list[np.ndarray]:
    """For each document's token ids, a mask of the tokens exact-substring dedup removes. Documents are
    joined with separators that occur once, so no repeat crosses a document boundary."""
    parts, bounds, pos = [], [], 0
    for i, ids in enumerate(docs):
        parts.append(np.asarray(ids, dtype=np.int64))
        parts.append(np.asarray([-1 - i], dtype=np.int64))  # unique separator
        bounds.append((pos, pos + len(ids)))
        pos += len(ids) + 1
    if not parts:
        return []
    mask = duplicated_mask(np.concatenate(parts), threshold)
    return [mask[s:e] for s, e in bounds]
