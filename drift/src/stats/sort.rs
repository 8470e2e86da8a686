//! Sorting numeric columns: a million-row column is sorted once per check, and a radix sort
//! on the floats' bits does it several times faster than a comparison sort.

/// Columns shorter than this are sorted by comparison (the radix sort's passes over its
/// histograms cost more than they save).
const RADIX_MIN_LEN: usize = 1 << 12;

/// Sorts `values` in `f64::total_cmp` order (NaN-free columns: ascending, -0.0 before 0.0).
pub fn sort_floats(values: &mut [f64]) {
    if values.len() < RADIX_MIN_LEN {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    let mut keys: Vec<u64> = values.iter().map(|&v| key(v)).collect();
    radix_sort(&mut keys);
    for (v, k) in values.iter_mut().zip(keys) {
        *v = from_key(k);
    }
}

/// The float's bits as an unsigned key in `total_cmp` order: negatives have every bit
/// flipped (larger magnitude sorts first), others only the sign bit.
fn key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

fn from_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Least-significant-digit radix sort, 11 bits a pass (six passes; a pass where every key
/// has the same digit is skipped).
fn radix_sort(keys: &mut Vec<u64>) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    const PASSES: usize = 64_usize.div_ceil(BITS as usize);
    let digit = |k: u64, pass: usize| ((k >> (pass as u32 * BITS)) as usize) & (BUCKETS - 1);
    // All histograms in one read of the keys.
    let mut counts = vec![[0usize; BUCKETS]; PASSES];
    for &k in keys.iter() {
        for (pass, c) in counts.iter_mut().enumerate() {
            c[digit(k, pass)] += 1;
        }
    }
    let mut scratch = vec![0u64; keys.len()];
    for (pass, c) in counts.iter().enumerate() {
        if c.contains(&keys.len()) {
            continue;
        }
        let mut next = [0usize; BUCKETS];
        let mut sum = 0;
        for (slot, &n) in next.iter_mut().zip(c.iter()) {
            *slot = sum;
            sum += n;
        }
        for &k in keys.iter() {
            let d = digit(k, pass);
            scratch[next[d]] = k;
            next[d] += 1;
        }
        std::mem::swap(keys, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_keep_total_order_and_read_back() {
        let values = [
            f64::NEG_INFINITY,
            -1e300,
            -1.0,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            5e-324,
            1.0,
            f64::INFINITY,
        ];
        for w in values.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{} < {}", w[0], w[1]);
        }
        for v in values {
            assert_eq!(from_key(key(v)).to_bits(), v.to_bits());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn sorts_as_total_cmp_does(
            mut values in prop::collection::vec(
                prop_oneof![any::<f64>().prop_filter("not NaN", |v| !v.is_nan()), Just(0.0), Just(-0.0), -3.0..3.0f64],
                RADIX_MIN_LEN..RADIX_MIN_LEN * 2,
            ),
        ) {
            let mut expected = values.clone();
            expected.sort_unstable_by(f64::total_cmp);
            sort_floats(&mut values);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&values), bits(&expected));
        }
    }
}
