"""An independent, literal reading of RichSpace Algorithms 2 and 3, for tests and benchmarks.

Written straight from the paper's pseudo-code (with docs/design.md's reading: i = 0..k, E_ta on
line 28), one candidate at a time, sharing no code with richspace.finder.
"""

import torch
import torch.nn.functional as F


def foot(ea, eb, ec):
    """Algorithm 3, PerpendicularFoot, one Frobenius projection."""
    e_ac = ec - ea
    e_ab = eb - ea
    l_proj = (e_ab * e_ac).sum() / (e_ab * e_ab).sum()
    return ea + l_proj * e_ab


def cosine_sim(ea, eb, ec, k):
    """Algorithm 3, CosineSim: phi_cos of each materialised candidate against the foot."""
    e_foot = foot(ea, eb, ec)
    scores = []
    for i in range(k + 1):
        e_interp = (i / k) * ea + ((k - i) / k) * eb
        scores.append(F.cosine_similarity(e_interp, e_foot, dim=-1).mean())
    return torch.stack(scores)


def literal_find(ea, eb, ec, n_a, n_b, n_c, k=30):
    """Algorithm 2, OptimalFinder: returns (index, summed curve, full curve, truncated curve, E_opt)."""
    n_ids = max(n_a, n_b, n_c)
    full = cosine_sim(ea, eb, ec, k)
    trunc = cosine_sim(ea[:n_ids], eb[:n_ids], ec[:n_ids], k)
    total = full + trunc
    best = 0
    for i in range(k + 1):  # first maximum wins
        if total[i] > total[best]:
            best = i
    e_opt = (best / k) * ea + ((k - best) / k) * eb  # line 28, with E_ta for the paper's E_tc
    return best, total, full, trunc, e_opt
