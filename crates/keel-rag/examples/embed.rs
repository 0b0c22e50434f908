//! Embedding throughput half of bench/rag.sh: embeds every chunk of `keel rag chunks --json` output (section
//! title, newline, text — what ingest embeds) with the local MiniLM and prints texts per second.
//!
//! Usage: cargo run --release -p keel-rag --example embed -- MINILM_DIR CHUNKS.jsonl

use std::time::Instant;

use keel_rag::{Embedder, MiniLm};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: embed MINILM_DIR CHUNKS.jsonl");
        std::process::exit(2);
    }
    let batch = std::env::var("BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(32);
    let model = MiniLm::load(std::path::Path::new(&args[1]))
        .expect("model")
        .with_batch(batch);
    let texts: Vec<String> = std::fs::read_to_string(&args[2])
        .expect("chunks")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            let (s, t) = (
                v["section"].as_str().unwrap_or(""),
                v["text"].as_str().unwrap_or(""),
            );
            if s.is_empty() {
                t.to_string()
            } else {
                format!("{s}\n{t}")
            }
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    model.embed(&refs[..refs.len().min(64)]).expect("warm-up");
    let t = Instant::now();
    let v = model.embed(&refs).expect("embedding");
    let s = t.elapsed().as_secs_f64();
    assert_eq!(v.len(), texts.len());
    println!(
        "{{\"texts\": {}, \"seconds\": {s}, \"per_second\": {}}}",
        texts.len(),
        texts.len() as f64 / s
    );
}
