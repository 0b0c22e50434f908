//! `keel tune`: the search with a progress bar showing the best so far, then the table of trials.

use anyhow::Result;
use keel_app::tune::{TuneOutcome, TuneSpec};
use keel_store::Store;
use std::path::Path;
use std::sync::Arc;

use super::block_on;
use super::train::{TerminalProgress, actor, spec_of};
use crate::cli::TuneArgs;
use crate::output::print_json;

pub fn tune(home: &Path, a: &TuneArgs) -> Result<i32> {
    let mut train = spec_of(&a.train)?;
    train.register = a.register;
    let spec = TuneSpec {
        train,
        trials: a.trials,
        folds: a.folds,
        time_budget_seconds: a.time_budget,
    };
    let quiet = a.train.json;
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} tuning [{bar:30}] {pos}/{len} evaluations  {msg}  ({elapsed})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        b
    };
    let b2 = bar.clone();
    let progress: keel_app::tune::TuneProgress = Arc::new(move |ev| {
        b2.set_length(ev.total as u64);
        b2.set_position(ev.done as u64);
        b2.set_message(format!(
            "rung {} ({} trees): trial {} scored {:.4}, best {:.4}",
            ev.rung + 1,
            ev.trees,
            ev.trial,
            ev.score,
            ev.best_so_far
        ));
        true
    });
    let ui = TerminalProgress::new(spec.train.settings.gbdt.n_trees as u64, quiet);
    let out = block_on(async {
        let store = Store::open(home).await?;
        let r = keel_app::tune::tune(&store, spec, &actor(), progress, ui.hook()).await;
        store.close().await;
        anyhow::Ok(r?)
    });
    bar.finish_and_clear();
    ui.finish();
    let out = out?;
    if a.train.json {
        print_json(&out);
    } else {
        report(&out);
    }
    Ok(0)
}

fn report(o: &TuneOutcome) {
    println!(
        "tuned in {:.1} s: {} trials, {}-fold cross-validation, successive halving over {:?} trees{}",
        o.seconds,
        o.trials.len(),
        o.folds,
        o.rungs,
        if o.stopped_early {
            " (the time budget cut it short)"
        } else {
            ""
        }
    );
    println!(
        "{:>5} {:>7} {:>9} {:>7} {:>6} {:>8} {:>6} {:>9}  run",
        "trial", "trees", &o.metric, "leaves", "lr", "min_leaf", "ff", "lambda_l2"
    );
    let mut rows: Vec<_> = o.trials.iter().collect();
    rows.sort_by(|a, b| {
        b.trees.cmp(&a.trees).then(if o.higher_is_better {
            b.score.total_cmp(&a.score)
        } else {
            a.score.total_cmp(&b.score)
        })
    });
    for t in rows {
        let p = |k: &str| t.params.get(k).copied().unwrap_or(f64::NAN);
        println!(
            "{:>5} {:>7} {:>9.4} {:>7} {:>6} {:>8} {:>6} {:>9}  {}{}{}",
            t.trial,
            t.trees,
            t.score,
            p("num_leaves"),
            p("learning_rate"),
            p("min_data_in_leaf"),
            p("feature_fraction"),
            p("lambda_l2"),
            &t.run_id[..12],
            if t.trial == o.best_trial {
                "  ← best"
            } else {
                ""
            },
            if t.baseline { "  (defaults)" } else { "" }
        );
    }
    match o.baseline_score {
        Some(b) if o.improved => println!(
            "best: trial {} with cross-validated {} {:.4} ± {:.4}, the defaults {:.4}",
            o.best_trial, o.metric, o.best_score, o.best_std_error, b
        ),
        Some(b) => println!(
            "the defaults were not beaten: {} {:.4}; nothing tried did better on these folds",
            o.metric, b
        ),
        None => println!(
            "best: trial {} with {} {:.4} (the defaults did not reach the last rung within the time budget)",
            o.best_trial, o.metric, o.best_score
        ),
    }
    println!(
        "runs: keel runs list --experiment {}   (parent run {})",
        o.experiment, o.run_id
    );
    match &o.registered {
        Some(r) => println!(
            "registered {}@{} with the best parameters (card: {})",
            r.model,
            r.version.unwrap_or(0),
            r.card_html.display()
        ),
        None => println!("nothing registered (add --register to train and register the best)"),
    }
}
