//! Latency of a full scan (injection with normalisation and decoding, PII, secrets) of 500-character prompts
//! on one core. The prompts (benign, PII-heavy, obfuscated attack) are `bench/guard_prompts.txt`, the same
//! file the Presidio anchor times. Needs `scripts/fetch-assets.sh guard`: the guard model is trained first (a
//! few seconds) unless `KEEL_GUARD_MODEL` names a model file. After criterion's estimates it prints p50/p99
//! over 20,000 timed calls per prompt (`p99 <name> <µs>` lines) for `bench/guard.sh`.

use criterion::Criterion;
use keel_guard::{Guard, GuardModel, ScanOptions};
use std::hint::black_box;
use std::time::Instant;

const PROMPTS: &str = include_str!("../../../bench/guard_prompts.txt");

fn model() -> GuardModel {
    if let Ok(p) = std::env::var("KEEL_GUARD_MODEL") {
        return GuardModel::from_bytes(&std::fs::read(p).expect("model file"))
            .expect("guard model");
    }
    let cache = keel_core::cache_dir();
    let train =
        keel_guard::read_labelled(&cache.join("s-labs/train.csv")).expect("S-Labs train split");
    let val = keel_guard::read_labelled(&cache.join("s-labs/validation.csv"))
        .expect("S-Labs validation split");
    let words =
        std::fs::read_to_string(cache.join("wamerican/american-english")).expect("word list");
    keel_guard::train_model(&train, &val, &[], &words, &Default::default())
        .expect("train")
        .0
}

fn prompts() -> Vec<(&'static str, &'static str)> {
    let names = ["benign", "pii", "attack"];
    let lines: Vec<&str> = PROMPTS.lines().collect();
    assert_eq!(lines.len(), names.len());
    for l in &lines {
        assert_eq!(l.chars().count(), 500, "bench prompts are 500 characters");
    }
    names.into_iter().zip(lines).collect()
}

fn bench(c: &mut Criterion, guard: &Guard) {
    let mut g = c.benchmark_group("full_scan_500_chars");
    for (name, p) in prompts() {
        g.bench_function(name, |b| {
            b.iter(|| black_box(guard.scan(black_box(p), &ScanOptions::input())))
        });
    }
    g.finish();
}

fn percentiles(guard: &Guard) {
    for (name, p) in prompts() {
        let mut us: Vec<f64> = (0..20_000)
            .map(|_| {
                let t = Instant::now();
                black_box(guard.scan(black_box(p), &ScanOptions::input()));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        us.sort_by(f64::total_cmp);
        println!("p50 {name} {:.2}", us[us.len() / 2]);
        println!("p99 {name} {:.2}", us[us.len() * 99 / 100]);
        // The n-gram injection path alone (normalisation, decoding, the classifier, rules).
        let mut us: Vec<f64> = (0..20_000)
            .map(|_| {
                let t = Instant::now();
                black_box(guard.injection(black_box(p)));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        us.sort_by(f64::total_cmp);
        println!("p50 injection_{name} {:.2}", us[us.len() / 2]);
        println!("p99 injection_{name} {:.2}", us[us.len() * 99 / 100]);
    }
}

fn main() {
    let guard = Guard::new(&model()).expect("guard");
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &guard);
    c.final_summary();
    percentiles(&guard);
}
