//! Fairness and slice metrics against a hand computation.

use keel_core::{ColumnData, Frame};
use keel_ml::Objective;
use keel_ml::eval::{EvalOptions, score};

#[test]
fn fairness_metrics_match_a_hand_computation() {
    // Group A: 4 rows. labels 1,1,0,0; predictions .9,.4,.6,.1 → predicted positive: rows 1,3.
    //   selection rate 2/4 = 0.5; TPR 1/2 = 0.5; FPR 1/2 = 0.5.
    // Group B: 5 rows. labels 1,1,1,0,0; predictions .8,.7,.2,.3,.1 → predicted positive: rows 1,2.
    //   selection rate 2/5 = 0.4; TPR 2/3; FPR 0/2 = 0.
    // Demographic parity difference 0.5 − 0.4 = 0.1; disparate impact 0.4 / 0.5 = 0.8;
    // equal opportunity difference 2/3 − 1/2 = 1/6; FPR difference 0.5.
    let y = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0];
    let p = [0.9, 0.4, 0.6, 0.1, 0.8, 0.7, 0.2, 0.3, 0.1];
    let frame = Frame {
        names: vec!["group".into()],
        columns: vec![ColumnData::Categorical {
            codes: vec![0, 0, 0, 0, 1, 1, 1, 1, 1],
            levels: vec!["A".into(), "B".into()],
        }],
    };
    let opts = EvalOptions {
        sensitive: vec!["group".into()],
        bootstrap: 0,
        ..Default::default()
    };
    let ev = score(Objective::Binary, &y, &p, &frame, &opts).unwrap();
    let f = &ev.fairness[0];
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(
        close(f.demographic_parity_difference, 0.1),
        "{}",
        f.demographic_parity_difference
    );
    assert!(
        close(f.disparate_impact_ratio, 0.8),
        "{}",
        f.disparate_impact_ratio
    );
    assert!(
        close(f.equal_opportunity_difference, 1.0 / 6.0),
        "{}",
        f.equal_opportunity_difference
    );
    assert!(close(f.false_positive_rate_difference, 0.5));
    let a = &f.groups[0];
    assert_eq!((a.group.as_str(), a.rows, a.positives), ("A", 4, 2));
    assert!(close(a.selection_rate.unwrap(), 0.5) && close(a.true_positive_rate.unwrap(), 0.5));
    let b = &f.groups[1];
    assert!(close(b.selection_rate.unwrap(), 0.4));
    assert!(close(b.true_positive_rate.unwrap(), 2.0 / 3.0));
    assert!(close(b.false_positive_rate.unwrap(), 0.0));
    // Group AUC by hand: A: pairs (.9,.6) (.9,.1) (.4,.6) (.4,.1) → 3/4.
    assert!(close(a.auc.unwrap(), 0.75));
}

#[test]
fn numeric_sensitive_columns_are_grouped_by_quartile() {
    let age: Vec<f64> = (0..100).map(|i| 18.0 + i as f64 * 0.5).collect();
    let y: Vec<f64> = (0..100).map(|i| (i % 2) as f64).collect();
    let p: Vec<f64> = (0..100).map(|i| if i < 50 { 0.9 } else { 0.1 }).collect();
    let frame = Frame {
        names: vec!["age".into()],
        columns: vec![ColumnData::Numeric(age)],
    };
    let opts = EvalOptions {
        sensitive: vec!["age".into()],
        bootstrap: 0,
        ..Default::default()
    };
    let ev = score(Objective::Binary, &y, &p, &frame, &opts).unwrap();
    let f = &ev.fairness[0];
    assert_eq!(f.groups.len(), 4);
    assert_eq!(f.groups.iter().map(|g| g.rows).sum::<usize>(), 100);
    // The first half is all selected, the second half none: parity difference 1.
    assert!((f.demographic_parity_difference - 1.0).abs() < 1e-12);
}

#[test]
fn bootstrap_intervals_bracket_the_point_estimate() {
    let y: Vec<f64> = (0..400).map(|i| ((i * 7) % 3 == 0) as u8 as f64).collect();
    let p: Vec<f64> = (0..400)
        .map(|i| {
            if y[i] == 1.0 {
                0.3 + (i % 10) as f64 * 0.05
            } else {
                0.1 + (i % 10) as f64 * 0.05
            }
        })
        .collect();
    let frame = Frame {
        names: vec![],
        columns: vec![],
    };
    let ev = score(Objective::Binary, &y, &p, &frame, &EvalOptions::default()).unwrap();
    for (k, m) in &ev.metrics {
        assert!(
            m.lower <= m.value + 1e-12 && m.value <= m.upper + 1e-12,
            "{k}: {m:?}"
        );
    }
    let auc = ev.metrics["auc"];
    assert!(auc.upper - auc.lower > 0.0 && auc.upper - auc.lower < 0.2);
}
