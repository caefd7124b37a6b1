"""The joint answer over many identifiers: member scores against the pooled nulls, stratum by stratum.

Within a stratum (same word list, length and template) every member and every null is exchangeable
under "the model saw none of them", so the exact rank-sum test (stats.rank_sum_test, valid under ties)
of the members' perplexity scores against the stratum's nulls is valid however few times each identifier
was repeated. Strata are independent and are joined by Fisher's method (valid for independent
super-uniform, discrete p-values; a stratum at p = 1 adds nothing rather than cancelling the others, as
the weighted Stouffer it replaces did). Numbers in, result out: docs/statistics.md, section 3.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from ghostsent.detection.results import PooledRankSum, StratumRankSum
from ghostsent.stats import fisher_combine, norm_ppf, rank_sum_test

FISHER = "Fisher's method over the strata's p-values"


def pooled_rank_sum(members: Mapping[str, Sequence[float]], nulls: Mapping[str, Sequence[float]]) -> PooledRankSum | None:
    """`members[stratum]`: the member scores of that stratum; `nulls[stratum]`: its null scores. None
    when no stratum has a member."""
    parts = []
    for st, null in nulls.items():
        xs = list(members.get(st, ()))
        if xs:
            rs = rank_sum_test(xs, null)
            parts.append(StratumRankSum(st, len(xs), len(null), rs.z, rs.p_value, rs.method, rs.non_finite))
    if not parts:
        return None
    if len(parts) == 1:
        return PooledRankSum(parts, parts[0].z, parts[0].p_value, parts[0].method)
    p = fisher_combine([x.p_value for x in parts])
    return PooledRankSum(parts, norm_ppf(p) if 0 < p < 1 else math.inf if p >= 1 else -math.inf, p, FISHER)
