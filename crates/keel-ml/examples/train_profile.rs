//! Times GBDT training alone on a numeric CSV (every column a number, empty = missing), for profiling the
//! trainer without the rest of `keel train`:
//!
//! `cargo run --release -p keel-ml --example train_profile -- FILE.csv TARGET binary|multiclass:K|poisson|l2 THREADS [TREES]`
use keel_ml::gbdt::{self, GbdtParams, Loss};
use keel_ml::{FeatureKind, FeatureSpec, Objective};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, target, task, threads, rest @ ..] = args.as_slice() else {
        eprintln!(
            "usage: train_profile FILE.csv TARGET binary|multiclass:K|poisson|l2 THREADS [TREES]"
        );
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(file).expect("read the file");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let t = header
        .iter()
        .position(|h| h == target)
        .expect("target column");
    let nf = header.len() - 1;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in lines {
        for (j, v) in line.split(',').enumerate() {
            let v: f64 = v.parse().unwrap_or(f64::NAN);
            if j == t {
                y.push(v);
            } else {
                x.push(v);
            }
        }
    }
    let specs: Vec<FeatureSpec> = header
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != t)
        .map(|(_, h)| FeatureSpec {
            name: h.to_string(),
            kind: FeatureKind::Numeric,
        })
        .collect();
    assert_eq!(x.len(), y.len() * nf);
    let p = GbdtParams {
        n_trees: rest.first().map_or(300, |t| t.parse().expect("trees")),
        num_leaves: 31,
        learning_rate: 0.05,
        min_data_in_leaf: 20,
        max_bins: 255,
        num_threads: threads.parse().expect("threads"),
        loss: match task.as_str() {
            "poisson" => Loss::Poisson,
            _ => Loss::L2,
        },
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let trees = match task.split_once(':') {
        Some(("multiclass", k)) => {
            let (e, _) = gbdt::train_multiclass(
                &specs,
                &x,
                &y,
                k.parse().expect("classes"),
                &p,
                None,
                &mut |_, _| true,
            )
            .expect("train");
            e.len()
        }
        _ => {
            let objective = if task == "binary" {
                Objective::Binary
            } else {
                Objective::Regression
            };
            gbdt::train(&specs, &x, &y, objective, &p, None, &mut |_, _| true).expect("train");
            1
        }
    };
    println!(
        "{} rows x {nf} features, {trees} group(s), {threads} thread(s): {:.3} s",
        y.len(),
        start.elapsed().as_secs_f64()
    );
}
