//! Two-sample Kolmogorov–Smirnov test, two-sided, as `scipy.stats.ks_2samp(method='auto')`.
//!
//! SciPy's choices, which we reproduce because users compare our p-values with theirs:
//! - the statistic is the largest gap between the two empirical CDFs evaluated at every
//!   observation (ties count fully, `searchsorted(side='right')`);
//! - `auto` uses the exact distribution when both samples have at most 10 000 values,
//!   otherwise the asymptotic one. In exact mode the statistic is snapped to the lattice
//!   `h / lcm(n1, n2)`; when the exact computation fails numerically (a probability outside
//!   [0, 1]) SciPy falls back to the asymptotic method, and so do we;
//! - the exact p-value uses Hodges' path counting (the closed form for equal sizes,
//!   Viehmann's "1 - p" inside-method recursion otherwise);
//! - the asymptotic p-value is `kstwo.sf(d, round(n1 n2 / (n1 + n2)))`.

use super::kolmogorov::kolmogn_sf;

/// Above this sample size `auto` switches from the exact to the asymptotic p-value.
pub const MAX_EXACT_N: usize = 10_000;

/// How the p-value was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    Exact,
    Asymptotic,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KsResult {
    pub statistic: f64,
    pub p_value: f64,
    pub method: KsMethod,
}

/// Two-sided two-sample KS test on two already sorted, NaN-free, non-empty samples.
pub fn ks_2samp_sorted(a: &[f64], b: &[f64]) -> KsResult {
    assert!(
        !a.is_empty() && !b.is_empty(),
        "ks_2samp needs two non-empty samples"
    );
    let (n1, n2) = (a.len(), b.len());
    let d = max_cdf_gap(a, b);
    if n1.max(n2) <= MAX_EXACT_N
        && let Some((d, p)) = exact(n1 as u64, n2 as u64, d)
    {
        return KsResult {
            statistic: d,
            p_value: p,
            method: KsMethod::Exact,
        };
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even();
    let p = kolmogn_sf(en as u64, d).clamp(0.0, 1.0);
    KsResult {
        statistic: d,
        p_value: p,
        method: KsMethod::Asymptotic,
    }
}

/// `max |F_a(x) - F_b(x)|` over all observations, with SciPy's tie-break (the negative side
/// wins only when strictly larger), computed with the same floating-point operations
/// (`count / n`) so the statistic is bit-identical.
fn max_cdf_gap(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let (mut max_pos, mut max_neg) = (f64::NEG_INFINITY, f64::INFINITY);
    while i < a.len() || j < b.len() {
        // The next distinct value; both CDFs jump past every copy of it.
        let v = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => unreachable!(),
        };
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        let diff = i as f64 / n1 - j as f64 / n2;
        max_pos = max_pos.max(diff);
        max_neg = max_neg.min(diff);
    }
    let min_s = (-max_neg).clamp(0.0, 1.0);
    if min_s > max_pos { min_s } else { max_pos }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The exact two-sided p-value, or `None` when it cannot be computed reliably.
fn exact(n1: u64, n2: u64, d: f64) -> Option<(f64, f64)> {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round_ties_even() as u64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return Some((d, 1.0));
    }
    let p = if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        outer_prob_inside(n1, n2, g, h)
    };
    (0.0..=1.0).contains(&p).then_some((d, p))
}

/// Proportion of lattice paths leaving the band `|x - y| < h` for equal sample sizes.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let mut p = 0.0;
    let mut k = n / h;
    loop {
        let mut p1 = 1.0;
        for j in 0..h {
            p1 = (n as f64 - (k * h) as f64 - j as f64) * p1
                / (n as f64 + (k * h) as f64 + j as f64 + 1.0);
        }
        p = p1 * (1.0 - p);
        if k == 0 {
            break;
        }
        k -= 1;
    }
    2.0 * p
}

/// Proportion of lattice paths from (0,0) to (m,n) that do not stay strictly inside the
/// band `|x/m - y/n| < h/lcm`, computed column by column as "1 - p" (Viehmann, 2021), which
/// keeps small p-values accurate.
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = ((m / g) as f64, (n / g) as f64);
    let hf = h as f64;
    let mut minj: i64 = 0;
    let mut maxj: i64 = ((hf / mg).ceil() as i64).min(n as i64 + 1);
    let mut curlen = maxj - minj;
    let len_a = ((2 * maxj + 2) as usize).min(n as usize + 1);
    let mut a = vec![1.0f64; len_a];
    for v in a.iter_mut().take(maxj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let fi = i as f64;
        let (lastminj, lastlen) = (minj, curlen);
        minj = (((ng * fi - hf) / mg).floor() as i64 + 1)
            .max(0)
            .min(n as i64);
        maxj = (((ng * fi + hf) / mg).ceil() as i64).min(n as i64 + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = (jj + minj) as f64;
            val = (a[(jj + minj - lastminj) as usize] * fi + val * j) / (fi + j);
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let start = (maxj - minj) as usize;
            let end = (start + (lastlen - curlen) as usize).min(a.len());
            for v in &mut a[start..end] {
                *v = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_have_statistic_zero_and_p_one() {
        let a = [1.0, 2.0, 3.0];
        let r = ks_2samp_sorted(&a, &a);
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn exact_path_counting_stays_in_bounds_for_all_small_sizes() {
        for n1 in 1..48usize {
            for n2 in 1..48usize {
                for shift in [0.0, 0.3, 5.0] {
                    let a: Vec<f64> = (0..n1).map(|i| (i * 7 % 11) as f64 / 11.0).collect();
                    let b: Vec<f64> = (0..n2)
                        .map(|i| (i * 5 % 13) as f64 / 13.0 + shift)
                        .collect();
                    let (mut a, mut b) = (a, b);
                    a.sort_by(f64::total_cmp);
                    b.sort_by(f64::total_cmp);
                    let r = ks_2samp_sorted(&a, &b);
                    assert!((0.0..=1.0).contains(&r.p_value), "{n1} {n2} {shift}: {r:?}");
                    assert!((0.0..=1.0).contains(&r.statistic));
                }
            }
        }
    }

    #[test]
    fn disjoint_samples_have_statistic_one() {
        let r = ks_2samp_sorted(&[1.0, 2.0], &[3.0, 4.0, 5.0]);
        assert_eq!(r.statistic, 1.0);
        // Exact: 2 of C(5,2)=10 orderings are this extreme.
        assert!((r.p_value - 0.2).abs() < 1e-12, "{}", r.p_value);
    }
}
