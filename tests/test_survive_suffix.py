"""The exact-substring dedup (Lee et al.) suffix-array implementation against brute force."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostsent.survive.suffix import duplicated_mask, lcp_array, strike_duplicates, suffix_array


def brute_mask(seq: list[int], threshold: int) -> list[bool]:
    """Every position inside a length-`threshold` window that occurs at least twice."""
    n = len(seq)
    windows: dict[tuple, list[int]] = {}
    for i in range(n - threshold + 1):
        windows.setdefault(tuple(seq[i:i + threshold]), []).append(i)
    mask = [False] * n
    for starts in windows.values():
        if len(starts) > 1:
            for s in starts:
                for j in range(s, s + threshold):
                    mask[j] = True
    return mask


seqs = st.lists(st.integers(0, 3), max_size=60)


@settings(max_examples=300, deadline=None)
@given(seq=seqs)
def test_suffix_array_sorts_suffixes(seq):
    sa = suffix_array(seq).tolist()
    assert sa == sorted(range(len(seq)), key=lambda i: seq[i:])
    lcp = lcp_array(seq, np.asarray(sa)).tolist()
    for r in range(1, len(sa)):
        a, b = seq[sa[r - 1]:], seq[sa[r]:]
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        assert lcp[r] == k


@settings(max_examples=300, deadline=None)
@given(seq=seqs, threshold=st.integers(1, 8))
def test_duplicated_mask_matches_brute_force(seq, threshold):
    assert duplicated_mask(seq, threshold).tolist() == brute_mask(seq, threshold)


@settings(max_examples=200, deadline=None)
@given(docs=st.lists(st.lists(st.integers(0, 2), max_size=15), max_size=5), threshold=st.integers(1, 5))
def test_strike_never_matches_across_documents(docs, threshold):
    got = [m.tolist() for m in strike_duplicates(docs, threshold)]
    # brute force with separators that cannot match
    joined, bounds = [], []
    for i, d in enumerate(docs):
        bounds.append((len(joined), len(joined) + len(d)))
        joined += d + [100 + i]
    ref = brute_mask(joined, threshold)
    assert got == [ref[s:e] for s, e in bounds]


def test_all_occurrences_are_struck_and_short_repeats_kept():
    ghost = [7, 8, 9, 10, 11]
    a = [1, 2, 3] + ghost + [4]
    b = [5, 6] + ghost + [0]
    masks = strike_duplicates([a, b], 5)
    assert masks[0].tolist() == [False] * 3 + [True] * 5 + [False]
    assert masks[1].tolist() == [False] * 2 + [True] * 5 + [False]
    assert not any(m.any() for m in strike_duplicates([a, b], 6))
