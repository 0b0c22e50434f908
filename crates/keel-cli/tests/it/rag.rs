//! `keel rag` and `keel eval retrieval` end to end: the JSON interfaces, a crash in the middle of an ingest,
//! the real Python FAQ, and the three answer modes (remote: a real `keel serve` on loopback).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{cache_dir, keel, stderr, stdout_json, write};

fn docs(dir: &Path) -> std::path::PathBuf {
    let d = dir.join("docs");
    std::fs::create_dir_all(&d).unwrap();
    write(
        &d,
        "copy.md",
        "# Objects\n\n## How do I copy an object?\n\nUse copy.copy for a shallow copy and copy.deepcopy for a deep copy.\n",
    );
    write(
        &d,
        "trees.rst",
        "Trees\n=====\n\nWhy are the leaves green?\n-------------------------\n\nLeaves contain chlorophyll, a pigment that reflects green light.\n",
    );
    write(&d, "notes.bin.txt", "\0\0binary");
    d
}

fn chunk_lines(home: &Path) -> Vec<String> {
    let o = keel(home, &["rag", "chunks", "--collection", "kb", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn ingest_reports_json_and_a_crash_mid_ingest_leaves_the_collection_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let d = docs(tmp.path());
    let o = keel(
        &home,
        &[
            "rag",
            "ingest",
            d.to_str().unwrap(),
            "--collection",
            "kb",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = stdout_json(&o);
    assert_eq!(v["documents"], 2);
    assert!(v["chunks"].as_u64().unwrap() >= 2);
    // The chunk-length distribution covers every chunk and stays within the token budget (200).
    let tokens = &v["chunk_lengths"]["tokens"];
    assert_eq!(tokens["count"], v["chunks"], "{v}");
    let (median, max) = (
        tokens["median"].as_u64().unwrap(),
        tokens["max"].as_u64().unwrap(),
    );
    assert!(median > 0 && median <= max && max <= 200, "{v}");
    assert!(
        v["chunk_lengths"]["words"]["median"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert_eq!(v["skipped"][0]["path"], "notes.bin.txt");
    assert!(
        v["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("binary")
    );
    let before = chunk_lines(&home);

    // A new file, and the process dies at each of two points of the ingest.
    write(
        &d,
        "ships.md",
        "# Ships\n\n## What is a keel?\n\nThe structural spine of a hull.\n",
    );
    for point in ["rag.mid_ingest", "rag.before_switch"] {
        let o = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args([
                "rag",
                "ingest",
                d.to_str().unwrap(),
                "--collection",
                "kb",
                "--json",
            ])
            .env("KEEL_HOME", &home)
            .env("KEEL_CACHE", cache_dir())
            .env("KEEL_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{point}: the failpoint did not fire");
        assert_eq!(chunk_lines(&home), before, "{point}");
        let o = keel(
            &home,
            &[
                "rag",
                "query",
                "--collection",
                "kb",
                "--question",
                "What is a keel?",
                "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout_json(&o)["citations"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["document"] != "ships.md")
        );
    }
    // The next ingest cleans up and completes.
    let o = keel(
        &home,
        &[
            "rag",
            "ingest",
            d.to_str().unwrap(),
            "--collection",
            "kb",
            "--json",
        ],
    );
    let v = stdout_json(&o);
    assert_eq!(
        (
            v["documents"].as_u64(),
            v["added"].as_u64(),
            v["unchanged"].as_u64()
        ),
        (Some(3), Some(1), Some(2))
    );
    let gens = std::fs::read_dir(home.join("rag/kb"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("gen-")
        })
        .count();
    assert_eq!(gens, 1);

    // Bad input: an unknown collection and a missing path exit 2 with the name in the message.
    let o = keel(
        &home,
        &["rag", "query", "--collection", "nope", "--question", "x"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'nope' does not exist"),
        "{}",
        stderr(&o)
    );
    let o = keel(
        &home,
        &["rag", "ingest", "/no/such/dir", "--collection", "kb"],
    );
    assert_eq!(o.status.code(), Some(2));
    let big = "why ".repeat(25_000);
    let o = keel(
        &home,
        &["rag", "query", "--collection", "kb", "--question", &big],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("limit"), "{}", stderr(&o));
}

#[test]
fn the_python_faq_answers_with_citations_and_retrieval_is_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let faq = cache_dir().join("python-3.11-docs").join("faq");
    assert!(faq.exists(), "run scripts/fetch-assets.sh pydocs");
    let o = keel(
        &home,
        &[
            "rag",
            "ingest",
            faq.to_str().unwrap(),
            "--collection",
            "faq",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["documents"], 8);

    let o = keel(
        &home,
        &[
            "rag",
            "query",
            "--collection",
            "faq",
            "--question",
            "How do I copy an object in Python?",
            "--json",
        ],
    );
    let v = stdout_json(&o);
    assert_eq!(v["citations"][0]["document"], "programming.rst.txt");
    assert_eq!(
        v["citations"][0]["section"],
        "How do I copy an object in Python?"
    );
    assert!(
        v["answer"].as_str().unwrap().contains("copy.deepcopy"),
        "{v}"
    );
    assert_eq!(v["grounded"], true);

    // The qrels script in the repository, run on the same sources, against the collection.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/faq_qrels.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&faq)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let qrels = tmp.path().join("faq.qrels.jsonl");
    std::fs::write(&qrels, &out.stdout).unwrap();
    let o = keel(
        &home,
        &[
            "eval",
            "retrieval",
            "--collection",
            "faq",
            "--qrels",
            qrels.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = stdout_json(&o);
    assert!(v["queries"].as_u64().unwrap() >= 170, "{v}");
    assert_eq!(v["unmatched_ids"].as_array().unwrap().len(), 0, "{v}");
    for m in ["bm25", "dense", "hybrid"] {
        assert!(v[m]["ndcg@10"].as_f64().unwrap() > 0.8, "{m}: {v}");
        assert!(v[m]["recall@5"].as_f64().unwrap() > 0.8, "{m}: {v}");
        assert!(v[m]["mrr@10"].as_f64().unwrap() > 0.8, "{m}: {v}");
    }
    let o = keel(
        &home,
        &[
            "rag",
            "tune",
            "--collection",
            "faq",
            "--qrels",
            qrels.to_str().unwrap(),
            "--json",
        ],
    );
    let t = stdout_json(&o);
    let w = t["fusion_weight"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&w));
    let o = keel(
        &home,
        &[
            "eval",
            "retrieval",
            "--collection",
            "faq",
            "--qrels",
            qrels.to_str().unwrap(),
            "--json",
        ],
    );
    let v = stdout_json(&o);
    assert_eq!(v["tuned"], true);
    // Tuned on these queries, the fused ranking is at least as good as the better single retriever.
    let best = v["bm25"]["ndcg@10"]
        .as_f64()
        .unwrap()
        .max(v["dense"]["ndcg@10"].as_f64().unwrap());
    assert!(
        v["hybrid"]["ndcg@10"].as_f64().unwrap() >= best - 1e-12,
        "{v}"
    );
}

#[test]
fn local_and_remote_modes_answer_and_remote_falls_back_when_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let d = docs(tmp.path());
    let o = keel(
        &home,
        &["rag", "ingest", d.to_str().unwrap(), "--collection", "kb"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let q = "Why are the leaves green?";

    let o = keel(
        &home,
        &[
            "rag",
            "query",
            "--collection",
            "kb",
            "--question",
            q,
            "--mode",
            "local",
            "--max-tokens",
            "24",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = stdout_json(&o);
    assert_eq!(v["mode"], "local");
    assert_eq!(v["citations"][0]["document"], "trees.rst");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(
        v["sentences"].as_array().is_some_and(|s| !s.is_empty()),
        "{v}"
    );

    // A real `keel serve` (its own home, no auth) is the OpenAI-compatible upstream.
    let server_home = tmp.path().join("server");
    let served = crate::serve(&server_home, &[]);
    let url = format!("http://127.0.0.1:{}", served.port);
    let o = keel(
        &home,
        &[
            "rag",
            "query",
            "--collection",
            "kb",
            "--question",
            q,
            "--mode",
            "remote",
            "--max-tokens",
            "24",
            "--remote-url",
            &format!("{url}/v1"),
            "--remote-model",
            "keel-local",
            "--json",
        ],
    );
    // The same server's /v1/embeddings builds a collection; queries then embed there too.
    let emb = format!("{url}/v1");
    let flags = [
        "--embeddings-url",
        emb.as_str(),
        "--embeddings-model",
        "all-MiniLM-L6-v2",
    ];
    let mut args = vec![
        "rag",
        "ingest",
        d.to_str().unwrap(),
        "--collection",
        "kb-remote",
        "--json",
    ];
    args.extend(flags);
    let ing = keel(&home, &args);
    let mut args = vec![
        "rag",
        "query",
        "--collection",
        "kb-remote",
        "--question",
        q,
        "--json",
    ];
    args.extend(flags);
    let remote_vectors = keel(&home, &args);
    let unconfigured = keel(
        &home,
        &["rag", "query", "--collection", "kb-remote", "--question", q],
    );
    let local = keel(
        &home,
        &[
            "rag",
            "query",
            "--collection",
            "kb",
            "--question",
            q,
            "--json",
        ],
    );
    drop(served);
    assert!(ing.status.success(), "{}", stderr(&ing));
    assert_eq!(stdout_json(&ing)["documents"], 2);
    let (rv, lv) = (stdout_json(&remote_vectors), stdout_json(&local));
    assert_eq!(rv["citations"][0]["document"], "trees.rst");
    let (rd, ld) = (
        rv["citations"][0]["dense"].as_f64().unwrap(),
        lv["citations"][0]["dense"].as_f64().unwrap(),
    );
    assert!(
        (rd - ld).abs() < 1e-5,
        "same model behind the endpoint: {rd} vs {ld}"
    );
    assert_eq!(
        unconfigured.status.code(),
        Some(2),
        "{}",
        stderr(&unconfigured)
    );
    assert!(
        stderr(&unconfigured).contains("openai:all-MiniLM-L6-v2"),
        "{}",
        stderr(&unconfigured)
    );

    assert!(o.status.success(), "{}", stderr(&o));
    let v = stdout_json(&o);
    assert_eq!(v["mode"], "remote", "{v}");
    assert!(v.get("fallback").is_none(), "{v}");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // Nothing listens there any more: a clear reason, and the extractive answer.
    let o = keel(
        &home,
        &[
            "rag",
            "query",
            "--collection",
            "kb",
            "--question",
            q,
            "--mode",
            "remote",
            "--remote-url",
            &format!("{url}/v1"),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = stdout_json(&o);
    assert_eq!(v["mode"], "extractive");
    assert!(
        v["fallback"].as_str().unwrap().contains("unreachable"),
        "{v}"
    );
    assert!(v["answer"].as_str().unwrap().contains("chlorophyll"));
}
