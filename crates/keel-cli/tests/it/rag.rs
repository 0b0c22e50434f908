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

    // Answers: the committed span set and the unanswerable questions, with the default floor, then with the
    // floor calibrated on the paraphrased questions and the odd unanswerable ones, checked on the even ones.
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench");
    let answers = bench.join("faq_answers.jsonl");
    let unanswerable = std::fs::read_to_string(bench.join("faq_unanswerable.jsonl")).unwrap();
    let half = |r: usize| -> String {
        unanswerable
            .lines()
            .enumerate()
            .filter(|(i, _)| i % 2 == r)
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    };
    let (odd, even) = (
        tmp.path().join("un-odd.jsonl"),
        tmp.path().join("un-even.jsonl"),
    );
    std::fs::write(&odd, half(0)).unwrap();
    std::fs::write(&even, half(1)).unwrap();
    let check = |un: &Path| {
        let o = keel(
            &home,
            &[
                "eval",
                "answers",
                "--collection",
                "faq",
                "--questions",
                answers.to_str().unwrap(),
                "--questions",
                un.to_str().unwrap(),
                "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        stdout_json(&o)
    };
    let before = check(&even);
    assert_eq!(before["calibrated"], false, "{before}");
    assert_eq!(before["answerable"], 59, "{before}");
    assert_eq!(before["unanswerable"], 20, "{before}");
    // Calibrated on natural questions (the paraphrased ones), not the titles, which match their sections
    // almost word for word and would set the floor too high.
    let paraphrased = bench.join("faq_paraphrased.qrels.jsonl");
    let o = keel(
        &home,
        &[
            "rag",
            "tune",
            "--collection",
            "faq",
            "--qrels",
            paraphrased.to_str().unwrap(),
            "--unanswerable",
            odd.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cal = stdout_json(&o)["confidence"].clone();
    assert_eq!(cal["answerable"], 40, "{cal}");
    assert_eq!(cal["unanswerable"], 20, "{cal}");
    assert!(cal["balanced_accuracy"].as_f64().unwrap() >= 0.85, "{cal}");
    let after = check(&even);
    assert_eq!(after["calibrated"], true, "{after}");
    assert_eq!(
        after["confidence_floor"].as_f64().unwrap(),
        cal["floor"].as_f64().unwrap(),
        "{after}"
    );
    // Calibrated on other questions, it still refuses most unanswerable ones and answers most answerable.
    assert!(after["refused"].as_f64().unwrap() >= 0.7, "{after}");
    assert!(after["answered"].as_f64().unwrap() >= 0.85, "{after}");
    assert!(after["span_rate"].as_f64().unwrap() >= 0.6, "{after}");
    assert!(
        after["confident_precision"].as_f64().unwrap() >= 0.9,
        "{after}"
    );
    // A labelled answerable question in --unanswerable is a mistake, named as such.
    let o = keel(
        &home,
        &[
            "rag",
            "tune",
            "--collection",
            "faq",
            "--qrels",
            qrels.to_str().unwrap(),
            "--unanswerable",
            answers.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lists answers"), "{}", stderr(&o));
}

#[test]
fn a_collection_built_with_mpnet_keeps_it_for_queries_and_reingests() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let d = docs(tmp.path());
    let ingest = |extra: &[&str]| {
        let mut args = vec![
            "rag",
            "ingest",
            d.to_str().unwrap(),
            "--collection",
            "kb",
            "--json",
        ];
        args.extend_from_slice(extra);
        keel(&home, &args)
    };
    let o = ingest(&["--embedder", "mpnet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = keel(&home, &["rag", "list", "--json"]);
    let v = stdout_json(&o);
    let kb = &v["collections"][0];
    assert_eq!(kb["collection"], "kb", "{v}");
    assert_eq!(
        kb["embedder"], "sentence-transformers/all-mpnet-base-v2",
        "{v}"
    );
    assert_eq!(kb["calibrated"], false, "{v}");
    // Queries embed with the collection's model (768 dimensions; MiniLM's 384 would not fit its index).
    let o = keel(
        &home,
        &[
            "rag",
            "query",
            "--collection",
            "kb",
            "--question",
            "What pigment makes leaves look green?",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let a = stdout_json(&o);
    assert_eq!(a["citations"][0]["document"], "trees.rst", "{a}");
    assert!(a["answer"].as_str().unwrap().contains("chlorophyll"), "{a}");
    // Re-ingesting without --embedder keeps the model; asking for another is refused, naming both.
    let o = ingest(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ingest(&["--embedder", "minilm"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("all-mpnet-base-v2") && e.contains("all-MiniLM-L6-v2"),
        "{e}"
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
