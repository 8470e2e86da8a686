//! The distribution of the one-sample two-sided Kolmogorov–Smirnov statistic `D_n`.
//!
//! SciPy's `ks_2samp(method='asymp')` takes its p-value from `kstwo.sf(d, round(en))`, i.e.
//! this finite-`n` distribution rather than the limiting Kolmogorov distribution, so we
//! follow the same case split as SciPy's `_kolmogn` (Simard & L'Ecuyer, 2011): closed forms
//! at the extremes (Ruben–Gambino), the exact one-sided Smirnov sum doubled in the tail,
//! the Durbin matrix (Marsaglia–Tsang–Wang) where it is affordable, and the Pelz–Good
//! asymptotic series for large `n`. Where SciPy uses Pomeranz's recursion we use the
//! Durbin matrix: both are exact, so they agree to rounding.

use std::f64::consts::PI;

const EXP_SCALE: i32 = 128;
const MIN_LOG: f64 = -708.0;

/// `P(D_n > x)`, the survival function of the two-sided one-sample KS statistic.
pub fn kolmogn_sf(n: u64, x: f64) -> f64 {
    if x.is_nan() || n == 0 {
        return f64::NAN;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        if t <= 0.5 {
            return 1.0;
        }
        let cdf = if n <= 140 {
            (1..=n).fold(1.0, |p, i| p * (i as f64 * (1.0 / nf) * (2.0 * t - 1.0)))
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return clip(1.0 - cdf);
    }
    if t >= nf - 1.0 {
        return clip(2.0 * (1.0 - x).powf(nf));
    }
    if x >= 0.5 {
        return clip(2.0 * smirnov_sf(n, x));
    }
    let nxsquared = t * x;
    if n <= 140 {
        if nxsquared <= 4.0 {
            return clip(1.0 - durbin_cdf(n, x));
        }
        return clip(2.0 * smirnov_sf(n, x));
    }
    if nxsquared >= 370.0 {
        return 0.0;
    }
    if nxsquared >= 2.2 {
        return clip(2.0 * smirnov_sf(n, x));
    }
    let cdf = if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        durbin_cdf(n, x)
    } else {
        pelz_good_cdf(n, x)
    };
    clip(1.0 - cdf)
}

fn clip(p: f64) -> f64 {
    p.clamp(0.0, 1.0)
}

/// `log(n! / n^n)` by Stirling's series (SciPy's coefficients).
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    // Exact rationals (SciPy writes them with 20 digits); extra digits are harmless.
    #[allow(clippy::excessive_precision)]
    const COEFFS: [f64; 8] = [
        -2.955065359477124183e-2,
        6.4102564102564102564e-3,
        -1.9175269175269175269e-3,
        8.4175084175084175084e-4,
        -5.952380952380952381e-4,
        7.9365079365079365079e-4,
        -2.7777777777777777778e-3,
        8.3333333333333333333e-2,
    ];
    let rn = 1.0 / n;
    let z = rn / n;
    let poly = COEFFS.iter().fold(0.0, |acc, c| acc * z + c);
    n.ln() / 2.0 - n + (2.0 * PI).ln() / 2.0 + rn * poly
}

/// Durbin's matrix formula for `P(D_n <= d)`, with Marsaglia–Tsang–Wang's scaling so the
/// matrix power neither overflows nor underflows.
fn durbin_cdf(n: u64, d: f64) -> f64 {
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    let mut v: Vec<f64> = (1..=m).map(|i| 1.0 - h.powi(i as i32)).collect();
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] *= fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;
    let mut hm = Matrix::zeros(m);
    for i in 1..m {
        for r in (i - 1)..m {
            hm.set(r, i, w[r - (i - 1)]);
        }
    }
    for (r, &value) in v.iter().enumerate() {
        hm.set(r, 0, value);
    }
    for c in 0..m {
        hm.set(m - 1, c, v[m - 1 - c]);
    }
    let mut power = Matrix::identity(m);
    let mut nn = n;
    let mut expnt: i32 = 0;
    let mut h_expnt: i32 = 0;
    let scale = 2f64.powi(EXP_SCALE);
    while nn > 0 {
        if nn % 2 == 1 {
            power = power.mul(&hm);
            expnt += h_expnt;
        }
        hm = hm.mul(&hm);
        h_expnt *= 2;
        if hm.get(k - 1, k - 1).abs() > scale {
            hm.scale(1.0 / scale);
            h_expnt += EXP_SCALE;
        }
        nn /= 2;
    }
    let mut p = power.get(k - 1, k - 1);
    let nf = n as f64;
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < 1.0 / scale {
            p *= scale;
            expnt -= EXP_SCALE;
        }
    }
    p * 2f64.powi(expnt)
}

/// Pelz–Good asymptotic series for `P(D_n <= x)` (large `n`).
fn pelz_good_cdf(n: u64, x: f64) -> f64 {
    let nf = n as f64;
    let z = nf.sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z.powi(3), z.powi(4), z.powi(6));
    let qlog = -PI * PI / 8.0 / z2;
    if qlog < MIN_LOG {
        return 0.0;
    }
    let q = qlog.exp();
    let (pi2, pi4, pi6) = (PI * PI, PI.powi(4), PI.powi(6));
    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);
    let mut k = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for kk in (1..=maxk).rev() {
        let m = (2 * kk - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qpower = q.powf(8.0 * kk as f64);
        let coeffs = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for i in 0..4 {
            k[i] = k[i] * qpower + coeffs[i];
        }
    }
    let sqrt2pi = (2.0 * PI).sqrt();
    let denominators = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for i in 0..4 {
        k[i] = k[i] * q * sqrt2pi / denominators[i];
    }
    let q = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let mut k2extra = 0.0;
    let mut k3extra = 0.0;
    for kk in (1..=maxk).rev() {
        let ks2 = (kk * kk) as f64;
        let kspi = PI * kk as f64;
        let qp = q.powf(ks2);
        k2extra += ks2 * qp;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ks2 * qp;
    }
    k[2] += k2extra * pi2 * sqrt2pi / (-36.0 * z3);
    k[3] += k3extra * pi2 * sqrt2pi / (216.0 * z6);
    (0..4).map(|i| k[i] / nf.powf(i as f64 / 2.0)).sum()
}

/// `P(D+_n > x)`, the one-sided Smirnov survival function, by the Birnbaum–Tingey sum
/// (all terms positive, accumulated in log space so large `n` neither overflows nor
/// underflows).
pub fn smirnov_sf(n: u64, x: f64) -> f64 {
    if !(0.0..=1.0).contains(&x) || n == 0 {
        return f64::NAN;
    }
    let nf = n as f64;
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }
    let nx = nf * x;
    let nxfl = nx.floor();
    if nxfl == 0.0 || (nxfl == 1.0 && nx == nxfl) {
        return 1.0 - x * (1.0 + x).powf(nf - 1.0);
    }
    if -2.0 * nf * x * x < -708.396_418_532_264_1 {
        return 0.0;
    }
    if nxfl >= nf - 1.0 {
        return (1.0 - x).powf(nf);
    }
    if n > 1_000_000 {
        let logp = -(6.0 * nx + 1.0).powi(2) / 18.0 / nf;
        // SciPy's approximation beyond this size: p ~ exp(-(6nx+1)^2 / 18n).
        return if logp < -std::f64::consts::LN_2 {
            logp.exp()
        } else {
            1.0 + logp.exp_m1()
        };
    }
    // Terms v = 0 ..= n - ceil(nx) - 1 when nx is an integer (the last term is zero),
    // otherwise v = 0 ..= n - ceil(nx): that is floor(n (1 - x)).
    let last = (n as i64) - (nxfl as i64) - 1;
    let mut sum = 0.0;
    let mut ln_binom = 0.0; // ln C(n, v)
    for v in 0..=last {
        let vf = v as f64;
        let a = x + vf / nf;
        let b = 1.0 - x - vf / nf;
        if b > 0.0 {
            let ln_term = ln_binom + (vf - 1.0) * a.ln() + (nf - vf) * b.ln();
            sum += ln_term.exp();
        }
        ln_binom += (nf - vf).ln() - (vf + 1.0).ln();
    }
    clip(x * sum)
}

/// A small dense square matrix, enough for the Durbin matrix power.
struct Matrix {
    n: usize,
    data: Vec<f64>,
}

impl Matrix {
    fn zeros(n: usize) -> Self {
        Matrix {
            n,
            data: vec![0.0; n * n],
        }
    }
    fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n);
        for i in 0..n {
            m.set(i, i, 1.0);
        }
        m
    }
    fn get(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.n + c]
    }
    fn set(&mut self, r: usize, c: usize, v: f64) {
        self.data[r * self.n + c] = v;
    }
    fn scale(&mut self, f: f64) {
        self.data.iter_mut().for_each(|v| *v *= f);
    }
    fn mul(&self, other: &Matrix) -> Matrix {
        let n = self.n;
        let mut out = Matrix::zeros(n);
        for i in 0..n {
            for k in 0..n {
                let a = self.data[i * n + k];
                if a == 0.0 {
                    continue;
                }
                let row = &other.data[k * n..(k + 1) * n];
                let dst = &mut out.data[i * n..(i + 1) * n];
                for (d, b) in dst.iter_mut().zip(row) {
                    *d += a * b;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durbin_agrees_with_the_one_point_closed_form() {
        // For 1/(2n) < x <= 1/n the CDF is n!/n^n (2nx - 1)^n (Ruben–Gambino).
        let n = 10u64;
        let x = 0.08;
        let closed = (1..=n).fold(1.0, |p, i| {
            p * (i as f64 / n as f64) * (2.0 * n as f64 * x - 1.0)
        });
        assert!((durbin_cdf(n, x) - closed).abs() < 1e-12);
    }

    #[test]
    fn survival_function_is_a_probability_across_regimes() {
        for n in [1u64, 2, 5, 50, 140, 141, 500, 5000, 200_000, 2_000_000] {
            let mut x = 0.0005;
            while x < 1.0 {
                let p = kolmogn_sf(n, x);
                assert!((0.0..=1.0).contains(&p), "n={n} x={x}: {p}");
                x += 0.0173;
            }
        }
    }

    #[test]
    fn smirnov_matches_its_closed_form_near_one() {
        // x >= 1 - 1/n: P(D+ > x) = (1 - x)^n.
        let n = 7u64;
        let x = 0.9;
        assert!((smirnov_sf(n, x) - 0.1f64.powi(7)).abs() < 1e-18);
    }
}
