//! Binning as Evidently's `get_binned_data` does it, for Jensen–Shannon and PSI:
//! numeric columns with more than 20 distinct reference values are cut into Sturges bins
//! over reference + current (`numpy.histogram_bin_edges(bins="sturges")`), anything else is
//! counted per distinct value. Shares that are zero are floored (PSI only): to 1e-4, or to
//! a millionth of the smallest non-zero share when that is itself ≤ 1e-4.

use std::collections::BTreeMap;

/// Bin edges exactly as `numpy.histogram_bin_edges(data, bins="sturges")` computes them
/// for the sorted, non-empty `all`.
pub fn sturges_edges(all_min: f64, all_max: f64, count: usize) -> Vec<f64> {
    let (mut first, mut last) = (all_min, all_max);
    let ptp = all_max - all_min;
    let width = ptp / ((count as f64).log2() + 1.0);
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let bins = if width > 0.0 {
        ((last - first) / width).ceil() as usize
    } else {
        1
    };
    linspace(first, last, bins + 1)
}

/// `numpy.linspace(start, stop, num)` with its rounding: `i * step + start`, last = stop.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = (num - 1) as f64;
    let step = (stop - start) / div;
    let mut out: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    out[num - 1] = stop;
    out
}

/// `numpy.histogram(sorted, edges)` counts: half-open bins, the last one closed.
pub fn histogram_sorted(sorted: &[f64], edges: &[f64]) -> Vec<u64> {
    let left = |e: f64| sorted.partition_point(|&v| v < e);
    let right = |e: f64| sorted.partition_point(|&v| v <= e);
    let mut cum: Vec<usize> = edges[..edges.len() - 1].iter().map(|&e| left(e)).collect();
    cum.push(right(edges[edges.len() - 1]));
    cum.windows(2).map(|w| (w[1] - w[0]) as u64).collect()
}

/// Number of distinct values of a sorted slice.
pub fn distinct_sorted(sorted: &[f64]) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    1 + sorted.windows(2).filter(|w| w[0] != w[1]).count()
}

/// Shares of reference and current per bin (numeric path) for two sorted samples.
pub fn binned_numeric(reference: &[f64], current: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let min = reference[0].min(current[0]);
    let max = reference[reference.len() - 1].max(current[current.len() - 1]);
    let edges = sturges_edges(min, max, reference.len() + current.len());
    let r = shares(&histogram_sorted(reference, &edges), reference.len());
    let c = shares(&histogram_sorted(current, &edges), current.len());
    (edges, r, c)
}

/// Shares per distinct value over the union of both samples' values (categorical path).
pub fn binned_categories(
    reference: &BTreeMap<String, u64>,
    current: &BTreeMap<String, u64>,
) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    let mut keys: Vec<String> = reference.keys().chain(current.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let (nr, nc): (u64, u64) = (reference.values().sum(), current.values().sum());
    let r = keys
        .iter()
        .map(|k| *reference.get(k).unwrap_or(&0) as f64 / nr as f64)
        .collect();
    let c = keys
        .iter()
        .map(|k| *current.get(k).unwrap_or(&0) as f64 / nc as f64)
        .collect();
    (keys, r, c)
}

fn shares(counts: &[u64], n: usize) -> Vec<f64> {
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

/// Evidently's zero floor for PSI (`feel_zeroes`).
pub fn floor_zeros(shares: &mut [f64]) {
    let min_nonzero = shares
        .iter()
        .copied()
        .filter(|&v| v != 0.0)
        .fold(f64::INFINITY, f64::min);
    let floor = if min_nonzero <= 1e-4 {
        min_nonzero / 1e6
    } else {
        1e-4
    };
    for v in shares.iter_mut().filter(|v| **v == 0.0) {
        *v = floor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_data_gets_one_unit_wide_bin() {
        assert_eq!(sturges_edges(3.0, 3.0, 10), vec![2.5, 3.5]);
    }

    #[test]
    fn last_bin_is_closed() {
        let counts = histogram_sorted(&[0.0, 0.5, 1.0, 1.0], &[0.0, 0.5, 1.0]);
        assert_eq!(counts, vec![1, 3]);
    }
}
