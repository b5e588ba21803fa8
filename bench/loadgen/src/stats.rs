//! The few statistics the timing comparison needs (timing.rs): quantiles,
//! the Mann-Whitney U test and the two-sample Kolmogorov-Smirnov test, both
//! with their large-sample (asymptotic) p-values. Small enough to check by
//! hand; the unit tests hold values computed with scipy 1.17 and reproducible
//! with Python's standard library (the formulas are in each function's doc).

/// The `q` quantile (0..=1) of `sorted` (ascending), interpolating linearly
/// between order statistics: numpy's default, R's type 7, Python's
/// `statistics.quantiles(method="inclusive")`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Sorted copy.
pub fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: its rank sum minus n1 (n1 + 1) / 2 (ties get
    /// their average rank); n1 n2 / 2 when neither tends to be larger.
    pub u: f64,
    /// (U - n1 n2 / 2), moved 0.5 toward 0 (continuity correction), over the
    /// tie-corrected standard deviation
    /// sqrt(n1 n2 / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1)))).
    pub z: f64,
    /// Two-sided, from the normal approximation: erfc(|z| / sqrt 2).
    pub p: f64,
}

/// The Mann-Whitney U test (Wilcoxon rank-sum), two-sided, normal
/// approximation with tie and continuity corrections: scipy's
/// `mannwhitneyu(a, b, method="asymptotic")`.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> MannWhitney {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let n = n1 + n2;
    let mut all: Vec<(f64, bool)> = a.iter().map(|&x| (x, true)).chain(b.iter().map(|&x| (x, false))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut rank_sum_a, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let rank = (i + j + 2) as f64 / 2.0;
        rank_sum_a += rank * all[i..=j].iter().filter(|(_, first)| *first).count() as f64;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let variance = if n > 1.0 { n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0))) } else { 0.0 };
    let distance = ((u - mean).abs() - 0.5).max(0.0);
    let z = if variance > 0.0 { (u - mean).signum() * distance / variance.sqrt() } else { 0.0 };
    MannWhitney { u, z, p: normal_two_sided(z) }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KolmogorovSmirnov {
    /// The largest distance between the two empirical distribution functions.
    pub d: f64,
    /// Two-sided, from Kolmogorov's limiting distribution: Q(sqrt(m n / (m + n)) D)
    /// with Q(x) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2) (scipy's
    /// `kstwobign.sf`; Numerical Recipes' `probks` without Stephens' term).
    pub p: f64,
}

/// The two-sample Kolmogorov-Smirnov test, two-sided, asymptotic p-value.
/// D is scipy's `ks_2samp(a, b).statistic`; the p-value is the classic
/// asymptotic one above (scipy's `method="asymp"` instead uses the finite-n
/// one-sample distribution at n = round(m n / (m + n)), a little smaller).
pub fn kolmogorov_smirnov(a: &[f64], b: &[f64]) -> KolmogorovSmirnov {
    let (a, b) = (sorted(a), sorted(b));
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n1 - j as f64 / n2).abs());
    }
    let en = n1 * n2 / (n1 + n2);
    KolmogorovSmirnov { d, p: kolmogorov_sf(en.sqrt() * d) }
}

/// P(K > x) for Kolmogorov's distribution K. Two series of the same
/// function, each where it converges in a few terms: for small x, the Jacobi
/// form 1 - sqrt(2 pi) / x * sum_{k>=1} exp(-(2k - 1)^2 pi^2 / (8 x^2)).
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let sf = if x < 1.18 {
        let w = -std::f64::consts::PI.powi(2) / (8.0 * x * x);
        let cdf: f64 = (1..=8).map(|k| ((2 * k - 1) as f64).powi(2)).map(|m| (m * w).exp()).sum::<f64>()
            * (2.0 * std::f64::consts::PI).sqrt()
            / x;
        1.0 - cdf
    } else {
        2.0 * (1..=100)
            .map(|k| (k as f64, if k % 2 == 1 { 1.0 } else { -1.0 }))
            .map(|(k, sign)| sign * (-2.0 * k * k * x * x).exp())
            .sum::<f64>()
    };
    sf.clamp(0.0, 1.0)
}

/// P(|Z| >= |z|) for a standard normal Z.
pub fn normal_two_sided(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

/// The complementary error function, by Numerical Recipes' Chebyshev fit
/// (`erfcc`): relative error below 1.2e-7 everywhere.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!((got - want).abs() <= rel * want.abs().max(1e-300), "got {got}, want {want}");
    }

    #[test]
    fn erfc_matches_the_standard_library_of_python() {
        // math.erfc(0.5), (1), (2), (3)
        close(erfc(0.5), 0.4795001221869535, 2e-7);
        close(erfc(1.0), 0.15729920705028513, 2e-7);
        close(erfc(2.0), 0.004677734981047265, 2e-7);
        close(erfc(3.0), 2.2090496998585438e-05, 2e-7);
        close(erfc(-1.0), 2.0 - 0.15729920705028513, 2e-7);
        close(erfc(0.0), 1.0, 2e-7);
        // The 5 % two-sided critical value of the normal distribution.
        close(normal_two_sided(1.959963984540054), 0.05, 1e-6);
        close(normal_two_sided(-1.959963984540054), 0.05, 1e-6);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        // numpy.quantile(s, [0.25, 0.5, 0.75, 0.95]); statistics.quantiles(s, n=4,
        // method="inclusive") gives the first three.
        let s = sorted(&[3.1, 1.2, 9.9, 4.4, 5.0, 2.2, 7.7, 6.1]);
        close(quantile(&s, 0.25), 2.875, 1e-12);
        close(quantile(&s, 0.5), 4.7, 1e-12);
        close(quantile(&s, 0.75), 6.5, 1e-12);
        close(quantile(&s, 0.95), 9.13, 1e-12);
        assert_eq!(quantile(&s, 0.0), 1.2);
        assert_eq!(quantile(&s, 1.0), 9.9);
        assert_eq!(quantile(&[4.0], 0.5), 4.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn mann_whitney_matches_scipys_documented_example() {
        // scipy.stats.mannwhitneyu docs: U = 17, asymptotic p = 0.11134688653314041.
        // By hand: mean 10, sd sqrt(5 * 4 * 10 / 12), z = (17 - 10 - 0.5) / sd = 1.5922,
        // p = math.erfc(z / math.sqrt(2)).
        let males = [19.0, 22.0, 16.0, 29.0, 24.0];
        let females = [20.0, 11.0, 17.0, 12.0];
        let r = mann_whitney(&males, &females);
        assert_eq!(r.u, 17.0);
        close(r.z, 6.5 / (50.0f64 / 3.0).sqrt(), 1e-12);
        close(r.p, 0.11134688653314041, 1e-6);
        // The other way round: U2 = n1 n2 - U1, the same p, z of the other sign.
        let r2 = mann_whitney(&females, &males);
        assert_eq!(r2.u, 3.0);
        close(r2.z, -r.z, 1e-12);
        close(r2.p, r.p, 1e-12);
    }

    #[test]
    fn mann_whitney_corrects_for_ties() {
        // scipy: mannwhitneyu(a, b, method="asymptotic") -> (21.5, 0.17176726978581658).
        // By hand: ranks of a (ties averaged) sum to 66.5, U = 66.5 - 45 = 21.5; ties
        // {2: 3, 3: 4, 4: 3, 5: 2, 7: 3} give sum(t^3 - t) = 24 + 60 + 24 + 6 + 24 = 138;
        // var = 72 / 12 * (18 - 138 / 272) = 104.955..., z = (21.5 - 36 + 0.5) / sqrt(var).
        let a = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 7.0, 7.0];
        let b = [2.0, 3.0, 4.0, 4.0, 5.0, 5.0, 7.0, 8.0];
        let r = mann_whitney(&a, &b);
        assert_eq!(r.u, 21.5);
        close(r.z, -14.0 / (6.0 * (18.0 - 138.0 / 272.0f64)).sqrt(), 1e-12);
        close(r.p, 0.17176726978581658, 1e-6);
    }

    #[test]
    fn mann_whitney_of_larger_samples() {
        let (x, y) = samples();
        // scipy: mannwhitneyu(x, y, method="asymptotic") -> (182.0, 0.12312009947155035)
        let r = mann_whitney(&x, &y);
        assert_eq!(r.u, 182.0);
        close(r.p, 0.12312009947155035, 1e-6);
    }

    #[test]
    fn mann_whitney_of_identical_samples_finds_nothing() {
        let r = mann_whitney(&[5.0; 10], &[5.0; 12]);
        assert_eq!((r.u, r.z, r.p), (60.0, 0.0, 1.0));
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert_eq!((r.u, r.z, r.p), (4.5, 0.0, 1.0));
    }

    #[test]
    fn kolmogorov_distribution_matches_scipys_kstwobign() {
        // scipy.stats.kstwobign.sf(x); with the standard library:
        // 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * x * x) for k in range(1, 101)).
        for (x, want) in [
            (0.3, 0.9999906941986655),
            (0.5, 0.9639452436648751),
            (0.8, 0.5441424115741981),
            (1.0, 0.26999967167735456),
            (1.18, 0.1234538094297657),
            (1.2, 0.11224966667072497),
            (1.36, 0.049485876755377876),
            (1.63, 0.009846364888486529),
            (2.0, 0.0006709252557796953),
            (3.0, 3.045995948942526e-08),
        ] {
            close(kolmogorov_sf(x), want, 1e-9);
        }
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        // The textbook critical values: 1.358 at 5 %, 1.628 at 1 %.
        close(kolmogorov_sf(1.3581), 0.05, 1e-3);
        close(kolmogorov_sf(1.6276), 0.01, 1e-3);
    }

    #[test]
    fn kolmogorov_smirnov_statistic_matches_scipy() {
        // scipy: ks_2samp(a, b).statistic = 0.41666666666666663 (5/12: after 3,
        // F_a = 6/9 and F_b = 2/8); with ties in and across the samples.
        let a = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 7.0, 7.0];
        let b = [2.0, 3.0, 4.0, 4.0, 5.0, 5.0, 7.0, 8.0];
        let r = kolmogorov_smirnov(&a, &b);
        close(r.d, 5.0 / 12.0, 1e-12);
        close(r.p, kolmogorov_sf((72.0f64 / 17.0).sqrt() * 5.0 / 12.0), 1e-12);
        let (x, y) = samples();
        // scipy: ks_2samp(x, y).statistic = 0.23, kstwobign.sf(sqrt(500 / 45) * 0.23)
        // = 0.5991955719698889.
        let r = kolmogorov_smirnov(&x, &y);
        close(r.d, 0.23, 1e-12);
        close(r.p, 0.5991955719698889, 1e-9);
        assert_eq!(kolmogorov_smirnov(&y, &x), r);
        let same = kolmogorov_smirnov(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]);
        assert_eq!((same.d, same.p), (0.0, 1.0));
        let apart = kolmogorov_smirnov(&[1.0, 2.0], &[3.0, 4.0, 5.0]);
        assert_eq!(apart.d, 1.0);
    }

    /// Two samples of 25 and 20 values (normal, the second shifted by 0.5).
    fn samples() -> (Vec<f64>, Vec<f64>) {
        let x = vec![
            0.61, 0.29, 0.06, 0.59, -1.73, -0.74, 0.51, -0.56, 0.39, 1.64, 0.05, -0.06, 0.64, -0.82, 0.37, 1.77, 1.09,
            -1.28, 2.36, 1.31, 1.05, -0.32, -0.4, 1.06, -2.47,
        ];
        let y = vec![
            2.2, 1.66, 1.38, 0.2, 0.36, 0.0, 0.96, 1.56, 0.44, 1.5, -0.3, 0.66, 2.31, 3.29, -0.27, -0.37, 0.38, 0.7,
            0.52, -0.71,
        ];
        (x, y)
    }
}
