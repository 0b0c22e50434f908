//! In-process scoring of an imported model, for `bench/import.sh`: imports MODEL, reads ROWS (little-endian:
//! u32 rows, u32 features, the rows as f64, the source library's outputs as f64), checks that Keel's outputs
//! equal the library's bit for bit, and prints JSON with µs per row at batch 1 (one `predict` per row) and at
//! batch 1,000 (`predict_rows` per 1,000 rows), each the best of several timed passes of at least 0.5 s.
//!
//! Usage: cargo run --release -p keel-ml --example import_bench -- MODEL ROWS

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, model_path, rows_path] = &args[..] else {
        eprintln!("usage: import_bench MODEL ROWS");
        std::process::exit(2);
    };
    let bytes = std::fs::read(model_path).expect("read the model");
    let started = Instant::now();
    let imported = keel_ml::import::import(&bytes, None, "y").expect("import");
    let model = imported.model;
    let b = std::fs::read(rows_path).expect("read the rows");
    let n = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    let nf = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    let f = |k: usize| f64::from_le_bytes(b[8 + 8 * k..16 + 8 * k].try_into().unwrap());
    let x: Vec<f64> = (0..n * nf).map(f).collect();
    let want: Vec<f64> = (0..n).map(|i| f(n * nf + i)).collect();
    // The first prediction compiles the scorer: part of the import's cost.
    let _ = model.predict(&x[..nf]);
    let import_ms = started.elapsed().as_secs_f64() * 1e3;
    let got = model.predict_rows(&x);
    let mismatches = got
        .iter()
        .zip(&want)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    let time = |pass: &dyn Fn() -> f64| -> f64 {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = Instant::now();
            let mut passes = 0usize;
            while t.elapsed().as_secs_f64() < 0.5 {
                black_box(pass());
                passes += 1;
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / (passes * n) as f64);
        }
        best
    };
    let batch1 = time(&|| {
        x.chunks_exact(nf)
            .map(|r| model.predict(black_box(r)))
            .sum()
    });
    let batch1000 = time(&|| {
        x.chunks(1000 * nf)
            .map(|c| model.predict_rows(black_box(c)).iter().sum::<f64>())
            .sum()
    });
    let layout = match &model.kind {
        keel_ml::ModelKind::Gbdt(e) => e.forest().layout(),
        keel_ml::ModelKind::GbdtMulticlass(v) => v[0].forest().layout(),
        keel_ml::ModelKind::Linear(_)
        | keel_ml::ModelKind::ImportedLinear(_)
        | keel_ml::ModelKind::LinearMulticlass(_) => "linear",
        keel_ml::ModelKind::Neural(_) => "onnx-runtime",
    };
    println!(
        "{}",
        serde_json::json!({
            "library": imported.source.library,
            "trees": imported.source.trees,
            "rows": n,
            "layout": layout,
            "import_ms": import_ms,
            "mismatches": mismatches,
            "us_per_row_batch1": batch1,
            "us_per_row_batch1000": batch1000,
        })
    );
}
