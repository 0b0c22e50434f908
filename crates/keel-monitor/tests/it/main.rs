//! keel-monitor integration tests: drift decisions on seeded samples and the statistics against hand values.

use keel_core::{ColumnData, Frame};
use keel_monitor::drift::{chi2_homogeneity, kolmogorov_sf, ks_p_value, psi_js};
use keel_monitor::{DriftOptions, compare};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller.
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// `n` rows: a normal column (mean `shift`), a column with `missing` missing values, and a categorical column
/// with level weights `cat`.
fn sample(n: usize, seed: u64, shift: f64, missing: f64, cat: &[f64]) -> Frame {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f64> = (0..n).map(|_| normal(&mut rng) + shift).collect();
    let m: Vec<f64> = (0..n)
        .map(|_| {
            if rng.random_bool(missing) {
                f64::NAN
            } else {
                rng.random::<f64>()
            }
        })
        .collect();
    let total: f64 = cat.iter().sum();
    let codes: Vec<u32> = (0..n)
        .map(|_| {
            let mut u = rng.random::<f64>() * total;
            for (i, w) in cat.iter().enumerate() {
                if u < *w {
                    return i as u32;
                }
                u -= w;
            }
            (cat.len() - 1) as u32
        })
        .collect();
    Frame {
        names: vec!["x".into(), "m".into(), "c".into()],
        columns: vec![
            ColumnData::Numeric(x),
            ColumnData::Numeric(m),
            ColumnData::Categorical {
                codes,
                levels: (0..cat.len()).map(|i| format!("L{i}")).collect(),
            },
        ],
    }
}

fn drifted(r: &keel_monitor::DriftReport) -> Vec<&str> {
    r.columns
        .iter()
        .filter(|c| c.drifted)
        .map(|c| c.name.as_str())
        .collect()
}

#[test]
fn large_samples_of_the_same_distribution_do_not_alarm() {
    let a = sample(300_000, 1, 0.0, 0.05, &[5.0, 3.0, 2.0]);
    let b = sample(300_000, 2, 0.0, 0.05, &[5.0, 3.0, 2.0]);
    let r = compare(&a, &b, &DriftOptions::default()).unwrap();
    assert_eq!(drifted(&r), Vec::<&str>::new(), "{r:#?}");
    for c in &r.columns {
        assert!(c.psi.unwrap() < 0.01, "{}: {:?}", c.name, c.psi);
    }
}

#[test]
fn every_kind_of_shift_is_flagged_and_nothing_else() {
    let a = sample(100_000, 1, 0.0, 0.02, &[5.0, 3.0, 2.0]);
    // Mean shift of half a standard deviation; missing rate 2 % -> 20 %; level mix 50/30/20 -> 30/30/40.
    let b = sample(100_000, 3, 0.5, 0.20, &[3.0, 3.0, 4.0]);
    let r = compare(&a, &b, &DriftOptions::default()).unwrap();
    assert_eq!(drifted(&r), vec!["x", "m", "c"]);
    let x = &r.columns[0];
    // The KS statistic of N(0,1) vs N(0.5,1) is 2Φ(0.25) − 1 ≈ 0.197.
    assert!(
        (x.statistic.unwrap() - 0.197).abs() < 0.01,
        "{:?}",
        x.statistic
    );
    // Wasserstein-1 of a mean shift is the shift itself: 0.5 sd.
    assert!(
        (x.wasserstein.unwrap() - 0.5).abs() < 0.03,
        "{:?}",
        x.wasserstein
    );
    let m = &r.columns[1];
    assert!((m.current_missing - 0.20).abs() < 0.01);
    let c = &r.columns[2];
    // Cramér's V for these two mixes (equal sample sizes): sqrt(((.2²/.8) + (.2²/.6)) / 2) ≈ 0.2415.
    assert!(
        (c.cramers_v.unwrap() - 0.2415).abs() < 0.01,
        "{:?}",
        c.cramers_v
    );
}

#[test]
fn a_new_category_is_drift() {
    let a = sample(50_000, 1, 0.0, 0.0, &[5.0, 3.0, 2.0]);
    let mut b = sample(50_000, 2, 0.0, 0.0, &[5.0, 3.0, 2.0]);
    if let ColumnData::Categorical { codes, levels } = &mut b.columns[2] {
        levels.push("NEW".into());
        for c in codes.iter_mut().step_by(5) {
            *c = 3;
        }
    }
    let r = compare(&a, &b, &DriftOptions::default()).unwrap();
    assert_eq!(drifted(&r), vec!["c"]);
    assert!(r.columns[2].histogram.labels.contains(&"NEW".to_string()));
}

#[test]
fn small_samples_give_insufficient_data_or_no_significance() {
    let a = sample(60, 1, 0.0, 0.0, &[1.0, 1.0]);
    let b = sample(60, 2, 3.0, 0.0, &[1.0, 1.0]);
    let r = compare(&a, &b, &DriftOptions::default()).unwrap();
    assert_eq!(drifted(&r), Vec::<&str>::new());
    assert!(
        r.columns[0].reason.starts_with("insufficient data"),
        "{}",
        r.columns[0].reason
    );
    assert!(r.columns[0].p_value.is_none());
    // 150 rows each: a big chance effect on a tiny sample is not significant after correction.
    let a = sample(150, 1, 0.0, 0.0, &[1.0, 1.0]);
    let b = sample(150, 2, 0.0, 0.0, &[1.0, 1.0]);
    let r = compare(&a, &b, &DriftOptions::default()).unwrap();
    assert_eq!(drifted(&r), Vec::<&str>::new());
}

#[test]
fn holm_adjusted_p_values_are_never_below_the_raw_ones() {
    let a = sample(5_000, 1, 0.0, 0.1, &[5.0, 3.0, 2.0]);
    let b = sample(5_000, 2, 0.05, 0.12, &[5.0, 3.2, 2.0]);
    let r = compare(&a, &b, &DriftOptions::default()).unwrap();
    let mut pairs: Vec<(f64, f64)> = r
        .columns
        .iter()
        .map(|c| (c.p_value.unwrap(), c.p_value_adjusted.unwrap()))
        .collect();
    pairs.sort_by(|x, y| x.0.total_cmp(&y.0));
    let m = pairs.len() as f64;
    assert!(pairs[0].1 >= (pairs[0].0 * m).min(1.0) - 1e-12);
    for w in pairs.windows(2) {
        assert!(w[1].1 >= w[0].1, "adjusted p-values follow the raw order");
    }
    for (p, adj) in pairs {
        assert!(adj >= p && adj <= 1.0);
    }
}

#[test]
fn columns_of_different_kinds_are_refused_and_unmatched_ones_listed() {
    let a = sample(1000, 1, 0.0, 0.0, &[1.0, 1.0]);
    let mut b = sample(1000, 2, 0.0, 0.0, &[1.0, 1.0]);
    b.columns[2] = ColumnData::Numeric(vec![0.0; 1000]);
    let e = compare(&a, &b, &DriftOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("column 'c' is categorical in the reference but numeric"),
        "{e}"
    );
    let mut b = sample(1000, 2, 0.0, 0.0, &[1.0, 1.0]);
    b.names[1] = "other".into();
    let r = compare(&a, &b, &DriftOptions::default()).unwrap();
    assert_eq!(r.unmatched, vec!["m".to_string(), "other".to_string()]);
    assert_eq!(r.columns.len(), 2);
}

#[test]
fn statistics_match_hand_values() {
    // Kolmogorov distribution: P(K > 1.36) ≈ 0.0494, P(K > 1.0) ≈ 0.2700, P(K > 0.5) ≈ 0.9639.
    assert!((kolmogorov_sf(1.36) - 0.0494).abs() < 5e-4);
    assert!((kolmogorov_sf(1.0) - 0.2700).abs() < 5e-4);
    assert!((kolmogorov_sf(0.5) - 0.9639).abs() < 5e-4);
    // The two series agree where they meet.
    assert!((kolmogorov_sf(1.1799999) - kolmogorov_sf(1.18)).abs() < 1e-6);
    assert!(ks_p_value(0.0, 1000, 1000) == 1.0);
    assert!(ks_p_value(0.2, 10_000, 10_000) < 1e-100);
    // Identical distributions: PSI 0, JS 0; disjoint: JS distance 1.
    let (psi, js) = psi_js(&[10.0, 20.0, 30.0], &[1.0, 2.0, 3.0]);
    assert!(psi.abs() < 1e-12 && js.abs() < 1e-7);
    let (_, js) = psi_js(&[10.0, 0.0], &[0.0, 10.0]);
    assert!((js - 1.0).abs() < 1e-12);
    // PSI by hand: (0.3−0.5)·ln(0.3/0.5) + (0.7−0.5)·ln(0.7/0.5).
    let (psi, _) = psi_js(&[50.0, 50.0], &[30.0, 70.0]);
    let want = -0.2 * (0.6f64).ln() + 0.2 * (1.4f64).ln();
    assert!((psi - want).abs() < 1e-12);
    // Chi² of [[10, 20], [20, 10]]: expected 15 everywhere, (25 / 15) · 4 = 6.667, 1 degree of freedom.
    let (stat, df) = chi2_homogeneity(&[10.0, 20.0], &[20.0, 10.0]);
    assert!((stat - 20.0 / 3.0).abs() < 1e-12);
    assert_eq!(df, 1);
}

#[test]
fn the_html_report_names_every_column_and_escapes_names() {
    let mut a = sample(2000, 1, 0.0, 0.0, &[1.0, 1.0]);
    let mut b = sample(2000, 2, 1.0, 0.0, &[1.0, 1.0]);
    a.names[0] = "<x>".into();
    b.names[0] = "<x>".into();
    let r = compare(&a, &b, &DriftOptions::default()).unwrap();
    let html = keel_monitor::report::html(&r, "a → b");
    assert!(html.contains("&lt;x&gt;") && !html.contains("<x>"));
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("<b>1</b> of 3 columns drifted"));
}

mod profiles {
    use keel_monitor::profile::{BinSpec, ProfileSpec, bin_edges};
    use keel_monitor::{DriftOptions, compare_profiles};
    use proptest::prelude::*;

    fn spec() -> ProfileSpec {
        ProfileSpec {
            features: vec![
                (
                    "x".into(),
                    BinSpec::Numeric {
                        edges: vec![-1.0, 0.0, 1.0],
                    },
                ),
                (
                    "c".into(),
                    BinSpec::Categorical {
                        levels: vec!["a".into(), "b".into(), "c".into()],
                    },
                ),
            ],
            prediction: ProfileSpec::probability_bins(),
        }
    }

    /// Rows of (x, c) and predictions from proptest's values (NaN and out-of-range codes included).
    fn batch() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
        proptest::collection::vec(
            (
                prop_oneof![Just(f64::NAN), -3.0..3.0f64],
                prop_oneof![Just(f64::NAN), Just(-1.0), 0.0..5.0f64],
                0.0..1.0f64,
            ),
            0..40,
        )
        .prop_map(|v| {
            let rows = v.iter().flat_map(|(x, c, _)| [*x, c.floor()]).collect();
            (rows, v.iter().map(|t| t.2).collect())
        })
    }

    proptest! {
        #[test]
        fn merging_is_associative_commutative_and_equals_counting_everything_at_once(
            a in batch(), b in batch(), c in batch()
        ) {
            let s = spec();
            let (pa, pb, pc) = (s.profile(&a.0, &a.1), s.profile(&b.0, &b.1), s.profile(&c.0, &c.1));
            let mut left = pa.clone();
            left.merge(&pb).unwrap();
            left.merge(&pc).unwrap();
            let mut bc = pb.clone();
            bc.merge(&pc).unwrap();
            let mut right = pa.clone();
            right.merge(&bc).unwrap();
            prop_assert_eq!(&left, &right);
            let mut swapped = pc.clone();
            swapped.merge(&pa).unwrap();
            swapped.merge(&pb).unwrap();
            prop_assert_eq!(&left, &swapped);
            let rows: Vec<f64> = [a.0, b.0, c.0].concat();
            let preds: Vec<f64> = [a.1, b.1, c.1].concat();
            prop_assert_eq!(&left, &s.profile(&rows, &preds));
            prop_assert_eq!(left.rows as usize, preds.len());
        }
    }

    #[test]
    fn profiles_of_different_specs_do_not_merge() {
        let s = spec();
        let mut other = s.clone();
        other.features.pop();
        let mut p = s.empty();
        assert!(p.merge(&other.empty()).is_err());
    }

    #[test]
    fn binned_drift_flags_a_shift_and_says_insufficient_data_for_a_few_rows() {
        let s = spec();
        let grid = |shift: f64, n: usize| -> (Vec<f64>, Vec<f64>) {
            let rows = (0..n)
                .flat_map(|i| [((i % 100) as f64 / 25.0 - 2.0) + shift, (i % 3) as f64])
                .collect();
            (
                rows,
                (0..n).map(|i| (i % 10) as f64 / 10.0 + 0.05).collect(),
            )
        };
        let (r, rp) = grid(0.0, 10_000);
        let reference = s.profile(&r, &rp);
        let (c, cp) = grid(0.0, 5_000);
        let same = compare_profiles(
            &s,
            &reference,
            &s.profile(&c, &cp),
            &DriftOptions::default(),
        )
        .unwrap();
        assert_eq!(same.drifted_columns, 0, "{same:#?}");
        assert_eq!(same.columns.len(), 3);
        assert_eq!(same.columns[2].name, "prediction");
        let (c, cp) = grid(0.8, 5_000);
        let moved = compare_profiles(
            &s,
            &reference,
            &s.profile(&c, &cp),
            &DriftOptions::default(),
        )
        .unwrap();
        let names: Vec<&str> = moved
            .columns
            .iter()
            .filter(|c| c.drifted)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, vec!["x"]);
        let (c, cp) = grid(0.8, 20);
        let few = compare_profiles(
            &s,
            &reference,
            &s.profile(&c, &cp),
            &DriftOptions::default(),
        )
        .unwrap();
        assert_eq!(few.drifted_columns, 0);
        assert!(few.columns[0].reason.starts_with("insufficient data"));
    }

    #[test]
    fn bin_edges_split_continuous_data_evenly_and_give_each_discrete_value_a_bin() {
        let v: Vec<f64> = (0..1000).map(f64::from).collect();
        let e = bin_edges(&v, 10);
        assert_eq!(e.len(), 9);
        assert_eq!(e[0], 100.0);
        assert!(bin_edges(&[f64::NAN], 10).is_empty());
        // A constant: a bin below, the value, and (implicitly) a bin above.
        assert_eq!(
            bin_edges(&[1.0, 1.0, 1.0], 10),
            vec![1.0f64.next_down(), 1.0]
        );
        // Ordinals: one bin each.
        let b = BinSpec::Numeric {
            edges: bin_edges(&[1.0, 2.0, 3.0, 2.0], 10),
        };
        let bins: Vec<usize> = [0.0, 1.0, 2.0, 3.0, 7.0, f64::NAN]
            .iter()
            .map(|&x| b.bin(x))
            .collect();
        assert_eq!(bins, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(
            keel_monitor::profile::numeric_labels(&bin_edges(&[1.0, 2.0, 3.0], 10)),
            vec!["< 1", "1", "2", "3", "> 3", "missing"]
        );
    }

    /// Discrete numeric columns (ordinals, 0/1 flags, constants) drift visibly in both paths, and the file
    /// comparison and the served-traffic profile agree on PSI and JS.
    #[test]
    fn discrete_columns_drift_the_same_in_files_and_in_served_profiles() {
        use keel_core::{ColumnData, Frame};
        let cases: [(&str, Vec<f64>, Vec<f64>); 3] = [
            (
                "ordinal",
                (0..300).map(|i| (i % 3 + 1) as f64).collect(),
                (0..300).map(|i| (i % 3 + 7) as f64).collect(),
            ),
            (
                "flag",
                (0..300).map(|i| f64::from(u8::from(i % 10 == 0))).collect(),
                (0..300).map(|i| f64::from(u8::from(i % 2 == 0))).collect(),
            ),
            (
                "constant",
                vec![5.0; 300],
                (0..300)
                    .map(|i| if i % 3 == 0 { 6.0 } else { 5.0 })
                    .collect(),
            ),
        ];
        for (name, a, b) in cases {
            let frame = |v: &[f64]| Frame {
                names: vec![name.into()],
                columns: vec![ColumnData::Numeric(v.to_vec())],
            };
            let file =
                keel_monitor::compare(&frame(&a), &frame(&b), &DriftOptions::default()).unwrap();
            let c = &file.columns[0];
            assert!(c.psi.unwrap() > 0.25, "{name}: file PSI {:?}", c.psi);
            assert!(c.js.unwrap() > 0.1, "{name}: file JS {:?}", c.js);
            assert!(c.drifted, "{name}: {c:?}");
            assert!(
                c.histogram.labels.len() >= 3,
                "{name}: {:?}",
                c.histogram.labels
            );
            // The served path: a profile spec built from the same reference values.
            let spec = ProfileSpec::from_training(
                &[(name.to_string(), None)],
                &a,
                10,
                ProfileSpec::probability_bins(),
            );
            let zeros = vec![0.5; a.len()];
            let reference = spec.profile(&a, &zeros);
            let current = spec.profile(&b, &zeros[..b.len()]);
            let served =
                compare_profiles(&spec, &reference, &current, &DriftOptions::default()).unwrap();
            let s = &served.columns[0];
            assert!(
                (s.psi.unwrap() - c.psi.unwrap()).abs() < 1e-9
                    && (s.js.unwrap() - c.js.unwrap()).abs() < 1e-9,
                "{name}: served PSI/JS {:?}/{:?} vs file {:?}/{:?}",
                s.psi,
                s.js,
                c.psi,
                c.js
            );
            // The served chart always has a missing bin; the file chart only when something is missing.
            assert_eq!(
                s.histogram.labels[..c.histogram.labels.len()],
                c.histogram.labels[..],
                "{name}"
            );
        }
    }
}
