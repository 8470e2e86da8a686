#!/usr/bin/env python3
"""Golden cases for mooring-drift's statistics, answered by SciPy.

Prints one JSON document on stdout: a list of cases, each with its inputs (`reference`,
`current`, or category counts) and SciPy's answers. The Rust test `golden_scipy` runs this
script with $MOORING_TEST_PYTHON at test time, so the expectations always come from the
SciPy installed in CI and nothing stale is committed.

Numbers are written with repr() precision (json does this), so the Rust side reads the
exact same doubles.
"""
import json
import sys

import numpy as np
from scipy import stats
from scipy.spatial import distance

rng = np.random.default_rng(20261122)


def ks_case(name, ref, cur):
    ref = np.asarray(ref, dtype=float)
    cur = np.asarray(cur, dtype=float)
    r = stats.ks_2samp(ref, cur, method="auto")
    return {
        "name": name,
        "kind": "ks",
        "reference": ref.tolist(),
        "current": cur.tolist(),
        "statistic": float(r.statistic),
        "p_value": float(r.pvalue),
        "wasserstein": float(stats.wasserstein_distance(ref, cur)),
        "wasserstein_normed": float(stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)),
        "jensenshannon": float(js_numeric(ref, cur)),
        "psi": float(psi_numeric(ref, cur)),
    }


def binned(ref, cur, floor):
    # Evidently's get_binned_data, numeric path when > 20 distinct reference values.
    if len(np.unique(ref)) > 20:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        rp = np.histogram(ref, bins)[0] / len(ref)
        cp = np.histogram(cur, bins)[0] / len(cur)
    else:
        keys = np.unique(np.concatenate([ref, cur]))
        rp = np.array([np.sum(ref == k) for k in keys]) / len(ref)
        cp = np.array([np.sum(cur == k) for k in keys]) / len(cur)
    if floor:
        for a in (rp, cp):
            m = min(a[a != 0])
            np.place(a, a == 0, m / 10**6 if m <= 0.0001 else 0.0001)
    return rp, cp


def js_numeric(ref, cur):
    rp, cp = binned(ref, cur, False)
    return distance.jensenshannon(rp, cp)


def psi_numeric(ref, cur):
    rp, cp = binned(ref, cur, True)
    return np.sum((rp - cp) * np.log(rp / cp))


def num(x):
    """JSON has no infinity: write non-finite numbers as the strings "inf"/"-inf"/"nan"."""
    x = float(x)
    return x if np.isfinite(x) else str(x)


def chi_case(name, ref_counts, cur_counts):
    keys = sorted(set(ref_counts) | set(cur_counts))
    r = np.array([ref_counts.get(k, 0) for k in keys], dtype=float)
    c = np.array([cur_counts.get(k, 0) for k in keys], dtype=float)
    f_exp = r * (c.sum() / r.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        gof = stats.chisquare(c, f_exp)
    cont = stats.chi2_contingency(np.vstack([r, c]))
    return {
        "name": name,
        "kind": "chi",
        "reference_counts": ref_counts,
        "current_counts": cur_counts,
        "chisquare_statistic": num(gof.statistic),
        "chisquare_p": float(gof.pvalue),
        "contingency_statistic": float(cont.statistic),
        "contingency_p": float(cont.pvalue),
        "jensenshannon": float(distance.jensenshannon(r / r.sum(), c / c.sum())),
    }


def main():
    cases = []
    n = rng.normal
    cases.append(ks_case("tiny", [1.0, 2.0, 3.5], [0.5, 2.5, 4.0, 4.5]))
    cases.append(ks_case("one_each", [1.0], [2.0]))
    cases.append(ks_case("identical", list(range(30)), list(range(30))))
    cases.append(ks_case("disjoint", n(0, 1, 40), n(10, 1, 60)))
    cases.append(ks_case("ties", rng.integers(0, 8, 200).astype(float), rng.integers(1, 9, 150).astype(float)))
    cases.append(ks_case("equal_sizes_shift", n(0, 1, 300), n(0.3, 1, 300)))
    cases.append(ks_case("unequal_sizes", n(0, 1, 137), n(0.2, 1.1, 911)))
    cases.append(ks_case("unequal_coprime_same", n(0, 1, 997), n(0, 1, 1009)))
    cases.append(ks_case("heavy_tails", rng.standard_cauchy(500), rng.standard_cauchy(700) * 1.5))
    cases.append(ks_case("constant_both", [2.0] * 50, [2.0] * 80))
    cases.append(ks_case("constant_reference", [2.0] * 50, n(2, 0.5, 80)))
    cases.append(ks_case("exact_limit", n(0, 1, 1000), n(0.05, 1, 10000)))
    # Asymptotic: max(n1, n2) > 10000, covering kstwo's regimes (Durbin, Smirnov, Pelz-Good).
    cases.append(ks_case("asymp_small_vs_large", n(0, 1, 60), n(0.1, 1, 12000)))
    cases.append(ks_case("asymp_tail", n(0, 1, 1000), n(0.3, 1, 20000)))
    cases.append(ks_case("asymp_no_shift", n(0, 1, 1000), n(0, 1, 20000)))
    cases.append(ks_case("asymp_large_pelz_good", n(0, 1, 8000), n(0.01, 1, 300000)))
    base = n(0, 1, 200)
    cases.append(ks_case("asymp_durbin_matrix", base, np.repeat(base, 60) + n(0, 0.01, 12000)))
    cases.append(ks_case("asymp_mid_smirnov", n(0, 1, 5000), n(0.04, 1, 50000)))
    cases.append(chi_case("chi_same", {"a": 30, "b": 50, "c": 20}, {"a": 33, "b": 47, "c": 20}))
    cases.append(chi_case("chi_shift", {"a": 30, "b": 50, "c": 20}, {"a": 60, "b": 30, "c": 10}))
    cases.append(chi_case("chi_binary", {"0": 40, "1": 60}, {"0": 55, "1": 45}))
    cases.append(chi_case("chi_new_category", {"a": 10, "b": 10}, {"a": 5, "b": 5, "c": 3}))
    json.dump({"scipy": __import__("scipy").__version__, "cases": cases}, sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
