//! ANN benchmark half of bench/rag.sh: builds Keel's HNSW over `base.f32` (60,000 × 784, squared L2) and
//! answers `query.f32` one query at a time on one thread at each `ef` (best of three passes), scoring
//! recall@10 against `gt.u32`.
//!
//! Usage: cargo run --release -p keel-rag --example ann -- DIR M EF_CONSTRUCTION EF[,EF...]

use std::time::Instant;

use keel_rag::hnsw::{Hnsw, HnswParams, Metric};

fn read_f32(path: &str) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: ann DIR M EF_CONSTRUCTION EF[,EF...]");
        std::process::exit(2);
    }
    let dir = &args[1];
    let m: usize = args[2].parse().expect("M");
    let efc: usize = args[3].parse().expect("EF_CONSTRUCTION");
    let efs: Vec<usize> = args[4].split(',').map(|x| x.parse().expect("EF")).collect();
    let dim = 784;
    let base = read_f32(&format!("{dir}/base.f32"));
    let query = read_f32(&format!("{dir}/query.f32"));
    let gt: Vec<u32> = std::fs::read(format!("{dir}/gt.u32"))
        .expect("gt.u32")
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mut h = Hnsw::new(
        dim,
        Metric::L2,
        HnswParams {
            m,
            ef_construction: efc,
            seed: 42,
        },
    );
    let t = Instant::now();
    for v in base.chunks_exact(dim) {
        h.add(v);
    }
    let build = t.elapsed().as_secs_f64();
    let nq = query.len() / dim;
    let mut runs = Vec::new();
    // As ann-benchmarks does: each ef is run three times over all queries and the fastest run counts
    // (the first pass also warms caches and page tables); recall is the same in every run.
    for &ef in &efs {
        let mut best = 0.0f64;
        let mut found = Vec::with_capacity(nq);
        for _ in 0..3 {
            found.clear();
            let t = Instant::now();
            for q in query.chunks_exact(dim) {
                found.push(h.search(q, 10, ef));
            }
            best = best.max(nq as f64 / t.elapsed().as_secs_f64());
        }
        let mut hits = 0usize;
        for (i, f) in found.iter().enumerate() {
            let truth = &gt[i * 10..i * 10 + 10];
            hits += f.iter().filter(|x| truth.contains(&x.0)).count();
        }
        runs.push(format!(
            "{{\"ef\": {ef}, \"recall@10\": {}, \"qps\": {best}}}",
            hits as f64 / (nq * 10) as f64
        ));
    }
    println!(
        "{{\"build_seconds\": {build}, \"runs\": [{}]}}",
        runs.join(", ")
    );
}
