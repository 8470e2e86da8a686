//! Distances and the chi-square tests, computed the way SciPy and Evidently compute them.

use std::collections::BTreeMap;

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// `scipy.stats.wasserstein_distance` of two sorted, NaN-free, non-empty samples: the area
/// between their empirical CDFs.
pub fn wasserstein_sorted(u: &[f64], v: &[f64]) -> f64 {
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    let mut prev: Option<f64> = None;
    // Walk the merged values; between consecutive values both CDFs are constant.
    while i < u.len() || j < v.len() {
        let x = match (u.get(i), v.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => unreachable!(),
        };
        if let Some(p) = prev {
            let gap = (i as f64 / nu - j as f64 / nv).abs();
            total += gap * (x - p);
        }
        while i < u.len() && u[i] <= x {
            i += 1;
        }
        while j < v.len() && v[j] <= x {
            j += 1;
        }
        prev = Some(x);
    }
    total
}

/// Population standard deviation (`numpy.std`, ddof = 0).
pub fn std_pop(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

/// Evidently's normed Wasserstein distance: the distance divided by the reference's
/// standard deviation, floored at 0.001 so constant references do not divide by zero.
pub fn wasserstein_normed_sorted(reference: &[f64], current: &[f64]) -> f64 {
    wasserstein_sorted(reference, current) / std_pop(reference).max(0.001)
}

/// Chi-square goodness of fit of the current counts to the reference proportions scaled to
/// the current size (`scipy.stats.chisquare(f_obs, f_exp)`, as Evidently's `chisquare`).
/// A category absent from the reference but present now gives an infinite statistic and
/// p = 0: it is as drifted as data can be. Returns (statistic, p-value).
pub fn chisquare_gof(
    reference: &BTreeMap<String, u64>,
    current: &BTreeMap<String, u64>,
) -> (f64, f64) {
    let n_ref: u64 = reference.values().sum();
    let n_cur: u64 = current.values().sum();
    let keys: Vec<&String> = union_keys(reference, current);
    let k_norm = n_cur as f64 / n_ref as f64;
    let mut stat = 0.0;
    for key in &keys {
        let obs = *current.get(*key).unwrap_or(&0) as f64;
        let exp = *reference.get(*key).unwrap_or(&0) as f64 * k_norm;
        let term = (obs - exp) * (obs - exp) / exp;
        stat += if term.is_nan() { 0.0 } else { term };
    }
    (stat, chi2_sf(stat, keys.len().saturating_sub(1)))
}

/// `scipy.stats.chi2_contingency` on the 2×k table (reference, current) × category, with
/// Yates' correction when there is one degree of freedom (SciPy's default).
pub fn chi2_contingency(
    reference: &BTreeMap<String, u64>,
    current: &BTreeMap<String, u64>,
) -> (f64, f64) {
    let keys = union_keys(reference, current);
    let rows = [reference, current];
    let row_totals: Vec<f64> = rows
        .iter()
        .map(|r| r.values().sum::<u64>() as f64)
        .collect();
    let col_totals: Vec<f64> = keys
        .iter()
        .map(|k| rows.iter().map(|r| *r.get(*k).unwrap_or(&0) as f64).sum())
        .collect();
    let total: f64 = row_totals.iter().sum();
    let dof = keys.len().saturating_sub(1);
    if dof == 0 {
        return (0.0, 1.0);
    }
    let mut stat = 0.0;
    for (r, row) in rows.iter().enumerate() {
        for (c, key) in keys.iter().enumerate() {
            let obs = *row.get(*key).unwrap_or(&0) as f64;
            let exp = row_totals[r] * col_totals[c] / total;
            let mut diff = obs - exp;
            if dof == 1 {
                // Yates: move each observation half a unit towards its expectation.
                diff = diff.signum() * (diff.abs() - 0.5).max(0.0);
            }
            stat += diff * diff / exp;
        }
    }
    (stat, chi2_sf(stat, dof))
}

fn chi2_sf(stat: f64, dof: usize) -> f64 {
    if dof == 0 {
        return if stat > 0.0 { 0.0 } else { 1.0 };
    }
    if stat.is_infinite() {
        return 0.0;
    }
    let dist = ChiSquared::new(dof as f64).expect("degrees of freedom are positive");
    dist.sf(stat)
}

fn union_keys<'a>(a: &'a BTreeMap<String, u64>, b: &'a BTreeMap<String, u64>) -> Vec<&'a String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// `scipy.spatial.distance.jensenshannon(p, q)` with the natural logarithm: both vectors
/// are normalised to sum to one first, as SciPy does.
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    let mut js = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let (a, b) = (a / sp, b / sq);
        let m = (a + b) / 2.0;
        js += rel_entr(a, m) + rel_entr(b, m);
    }
    (js / 2.0).max(0.0).sqrt()
}

fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Population stability index of two binned distributions (shares, already floored so no
/// bin is zero): `sum (ref - cur) * ln(ref / cur)`.
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(r, c)| (r - c) * (r / c).ln())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasserstein_of_a_shift_is_the_shift() {
        let a = [0.0, 1.0, 2.0, 3.0];
        let b = [0.5, 1.5, 2.5, 3.5];
        assert!((wasserstein_sorted(&a, &b) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn constant_reference_uses_the_std_floor() {
        let r = [2.0; 10];
        let c = [2.1; 10];
        assert!((wasserstein_normed_sorted(&r, &c) - 0.1 / 0.001).abs() < 1e-9);
    }

    #[test]
    fn new_category_is_infinitely_drifted() {
        let r = BTreeMap::from([("a".to_string(), 10u64)]);
        let c = BTreeMap::from([("a".to_string(), 5u64), ("b".to_string(), 5u64)]);
        let (stat, p) = chisquare_gof(&r, &c);
        assert!(stat.is_infinite());
        assert_eq!(p, 0.0);
    }
}
