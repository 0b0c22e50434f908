//! `keel rag ingest | query | list | chunks | delete | tune`, `keel eval retrieval`.

use anyhow::{Context, Result};
use keel_app::openai::{REMOTE_EMBEDDER_PREFIX, RemoteEmbedder, RemoteEmbeddingsConfig};
use keel_app::rag::{AnswerMode, IngestScreen, IngestSpec, Question, RagState, TextSink};
use keel_rag::collection::{Collection, Mode};
use keel_rag::eval::{
    Metrics, calibrate_floor, check_answers, judged, mean, parse_answer_cases, parse_qrels, score,
};
use keel_rag::query::QueryOptions;
use keel_rag::{Embedder, LocalModel, MiniLm};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block_on;
use std::time::Instant;

use super::input_error;
use crate::cli::{
    EvalAnswersArgs, EvalRetrievalArgs, RagCollectionArgs, RagDeleteArgs, RagIngestArgs,
    RagListArgs, RagQueryArgs, RagTuneArgs,
};
use crate::output::{bar, print_json};

/// Where collections live: `$KEEL_HOME/rag`.
pub fn root(home: &Path) -> PathBuf {
    home.join("rag")
}

/// The default local embedding model (MiniLM), fetching it into the asset cache if needed.
pub fn embedder(quiet: bool) -> Result<MiniLm> {
    local_embedder(LocalModel::MiniLm, quiet)
}

/// A local embedding model, fetching it into the asset cache if needed.
pub fn local_embedder(m: LocalModel, quiet: bool) -> Result<MiniLm> {
    let weights = crate::assets::require(
        m.name(),
        &format!("{}/model.safetensors", m.dir_name()),
        quiet,
    )?;
    Ok(MiniLm::load(
        weights.parent().expect("a file in the model folder"),
    )?)
}

/// The remote embeddings settings: `[serve.llm.embeddings]` with the flags over it.
fn embeddings_config(a: &crate::cli::EmbeddingsArgs) -> Result<RemoteEmbeddingsConfig> {
    let mut c = keel_app::config::llm(a.config.as_deref())?.embeddings;
    if let Some(u) = &a.embeddings_url {
        c.base_url = Some(u.clone());
    }
    if let Some(m) = &a.embeddings_model {
        c.model = m.clone();
    }
    Ok(c)
}

/// The embedder for an ingest: the configured remote endpoint, else a local model — the one asked for (which
/// an existing collection must have been built with), else the collection's own, else MiniLM.
fn ingest_embedder(home: &Path, spec: &IngestSpec, a: &RagIngestArgs) -> Result<Box<dyn Embedder>> {
    let c = embeddings_config(&a.embeddings)?;
    if c.base_url.is_some() {
        return Ok(Box::new(RemoteEmbedder::new(&c)?));
    }
    let m = match Collection::open(&root(home), &spec.collection) {
        Ok(c) => {
            keel_app::rag::check_embedder(&c, spec.embedder)?;
            LocalModel::from_id(&c.manifest.embedder).unwrap_or_default()
        }
        Err(_) => spec.embedder.unwrap_or_default(),
    };
    Ok(Box::new(local_embedder(m, a.json)?))
}

/// The embedder a collection was built with (queries must use the same vector space).
fn collection_embedder(
    c: &Collection,
    a: &crate::cli::EmbeddingsArgs,
    quiet: bool,
) -> Result<Box<dyn Embedder>> {
    if !c.manifest.embedder.starts_with(REMOTE_EMBEDDER_PREFIX) {
        let m = LocalModel::from_id(&c.manifest.embedder).unwrap_or_default();
        return Ok(Box::new(local_embedder(m, quiet)?));
    }
    let cfg = embeddings_config(a)?;
    let remote = RemoteEmbedder::new(&cfg).map_err(|_| {
        input_error(format!(
            "collection '{}' was built with {}; name its endpoint with --embeddings-url",
            c.manifest.name, c.manifest.embedder
        ))
    })?;
    if remote.id() != c.manifest.embedder {
        return Err(input_error(format!(
            "collection '{}' was built with {}, not {} (set --embeddings-model)",
            c.manifest.name,
            c.manifest.embedder,
            remote.id()
        )));
    }
    Ok(Box::new(remote))
}

pub fn ingest(home: &Path, a: &RagIngestArgs) -> Result<i32> {
    let spec = IngestSpec {
        collection: a.collection.clone(),
        path: a.path.clone(),
        max_tokens: a.max_tokens,
        overlap: a.overlap,
        screen: !a.no_screen,
        embedder: a
            .embedder
            .as_deref()
            .map(LocalModel::from_name)
            .transpose()?,
    };
    spec.check()?;
    let e: Arc<dyn Embedder> = Arc::from(ingest_embedder(home, &spec, a)?);
    // Indirect injection: new chunks are screened by the registered guard model, per the collection's policy.
    let gcfg = keel_app::config::guard(a.embeddings.config.as_deref())?;
    let pb = bar(0, "embedding chunks", a.json);
    let progress = {
        let pb = pb.clone();
        Box::new(move |done: usize, total: usize| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(async {
        let store = keel_store::Store::open(home).await?;
        // Shared collections: build on the published generation, publish the new one by compare-and-swap.
        let base = keel_app::rag::sync_collection(&store, &root(home), &spec.collection).await?;
        let name = spec.collection.clone();
        let screen = if a.no_screen {
            IngestScreen {
                screening: "off (--no-screen)".into(),
                ..IngestScreen::resolve_none()
            }
        } else {
            IngestScreen::resolve(&store, &gcfg, &spec.collection, true).await?
        };
        let outcome = keel_app::rag::ingest(e, root(home), spec, screen, progress).await?;
        keel_app::rag::publish_collection(
            &store,
            &root(home),
            &name,
            base.as_deref(),
            &super::train::actor(),
        )
        .await?;
        store.close().await;
        anyhow::Ok(outcome)
    })?;
    let (report, screening) = (&outcome.report, &outcome.screening);
    pb.finish_and_clear();
    let seconds = outcome.seconds;
    if a.json {
        print_json(&outcome);
    } else {
        println!(
            "{}: {} documents, {} chunks ({} added, {} updated, {} unchanged, {} removed; {} chunks embedded) in {seconds:.1} s",
            a.collection,
            report.documents,
            report.chunks,
            report.added,
            report.updated,
            report.unchanged,
            report.removed,
            report.embedded_chunks
        );
        let (t, w) = (&report.chunk_lengths.tokens, &report.chunk_lengths.words);
        println!(
            "  chunk length: median {} tokens ({} words), 10–90 % {}–{} tokens, max {}",
            t.median, w.median, t.p10, t.p90, t.max
        );
        for s in &report.skipped {
            println!("  skipped {}: {}", s.path, s.reason);
        }
        println!("  injection screen: {screening}");
        for s in &report.screened {
            println!(
                "  {} {}: {}",
                serde_json::to_value(s.action)?.as_str().unwrap_or(""),
                s.chunk_id,
                s.reason
            );
        }
    }
    Ok(0)
}

pub fn query(home: &Path, a: &RagQueryArgs) -> Result<i32> {
    let retrieval: Mode = a.retrieval.parse().map_err(input_error)?;
    let mode: AnswerMode = a.mode.parse().map_err(input_error)?;
    keel_rag::query::check_question(&a.question)?;
    let started = Instant::now();
    let mut llm = keel_app::config::llm(a.embeddings.config.as_deref())?;
    llm.embeddings = embeddings_config(&a.embeddings)?;
    if let Some(u) = &a.remote_url {
        llm.remote.base_url = Some(u.clone());
    }
    if let Some(m) = &a.remote_model {
        llm.remote.model = m.clone();
    }
    if llm.assets_dir.is_none() {
        llm.assets_dir = Some(crate::assets::cache_dir());
    }
    if !llm.minilm_dir().join("model.safetensors").exists() {
        crate::assets::fetch("minilm", a.json)?;
    }
    if mode == AnswerMode::Local && !llm.llm_path().exists() {
        crate::assets::fetch("smollm2", a.json)?;
    }
    let max_tokens = a.max_tokens.unwrap_or(llm.max_tokens);
    let rag = RagState::new(home, llm);
    let q = Question {
        question: a.question.clone(),
        mode,
        options: QueryOptions {
            retrieval,
            k: a.k.clamp(1, 50),
            ..Default::default()
        },
        max_tokens,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = rt.block_on(async {
        let store = keel_store::Store::open(home).await?;
        keel_app::rag::sync_collection(&store, &root(home), &a.collection).await?;
        store.close().await;
        let c = rag.collection(&a.collection)?;
        // In a terminal, a local model's answer appears as it is generated.
        let stream: Option<TextSink> = (mode == AnswerMode::Local && !a.json).then(|| {
            Box::new(|piece: &str| {
                use std::io::Write;
                print!("{piece}");
                let _ = std::io::stdout().flush();
                true
            }) as TextSink
        });
        keel_app::rag::answer(&rag, c, q, stream).await
    })?;
    let (r, used, fallback) = (&answer.result, answer.mode, &answer.fallback);
    let trace_id = format!(
        "{:016x}",
        keel_core::time::now_unix_ms() as u64 ^ u64::from(std::process::id()) << 40
    );
    if let Some(f) = &fallback
        && !a.json
    {
        eprintln!("keel: {f}; answering extractively");
    }
    if a.json {
        let mut v = serde_json::to_value(&answer)?;
        v["trace_id"] = json!(trace_id);
        v["seconds"] = json!(started.elapsed().as_secs_f64());
        print_json(&v);
    } else {
        if used == AnswerMode::Local && r.confident {
            println!("\n"); // the answer was streamed above
        } else {
            println!("{}\n", r.answer);
        }
        for (i, c) in r.citations.iter().enumerate() {
            println!(
                "[{}] {} — {} (score {:.3})",
                i + 1,
                c.document,
                c.section,
                c.score
            );
            if let Some(why) = &c.untrusted {
                println!("    untrusted source: {why}");
            }
        }
        if !r.grounded {
            for s in r.sentences.iter().filter(|s| !s.supported) {
                println!("  unsupported: {}", s.text);
            }
        }
    }
    Ok(0)
}

/// Shared collections (artifacts in object storage): brings the local copies up to the published
/// generations first, `name` or all of them; returns the published generation of `name`.
fn sync(home: &Path, name: Option<&str>) -> Result<Option<String>> {
    block_on(async {
        let store = keel_store::Store::open(home).await?;
        let out = match name {
            Some(n) => keel_app::rag::sync_collection(&store, &root(home), n).await?,
            None => {
                keel_app::rag::sync_all(&store, &root(home)).await?;
                None
            }
        };
        store.close().await;
        anyhow::Ok(out)
    })
}

/// Shared collections: publishes the local current generation of `name`, built on `base` (`copy`: as a new
/// generation, after a change made in place to the published one).
fn publish(home: &Path, name: &str, base: Option<&str>, copy: bool) -> Result<()> {
    block_on(async {
        let store = keel_store::Store::open(home).await?;
        let (root, actor) = (root(home), super::train::actor());
        if copy {
            keel_app::rag::republish_collection(&store, &root, name, base, &actor).await?;
        } else {
            keel_app::rag::publish_collection(&store, &root, name, base, &actor).await?;
        }
        store.close().await;
        anyhow::Ok(())
    })
}

pub fn list(home: &Path, a: &RagListArgs) -> Result<i32> {
    sync(home, None)?;
    let names = keel_rag::collection::list(&root(home))?;
    let mut rows = Vec::new();
    for n in names {
        let c = Collection::open(&root(home), &n)?;
        rows.push(json!({
            "collection": n,
            "documents": c.manifest.documents.len(),
            "chunks": c.chunks.len(),
            "embedder": c.manifest.embedder,
            "fusion_weight": c.manifest.config.fusion_weight,
            "tuned": c.manifest.config.tuned,
            "confidence_floor": c.manifest.config.min_similarity,
            "calibrated": c.manifest.config.calibrated,
        }));
    }
    if a.json {
        print_json(&json!({ "collections": rows }));
    } else {
        for r in rows {
            println!(
                "{:<24} {:>6} documents {:>7} chunks",
                r["collection"].as_str().unwrap_or(""),
                r["documents"],
                r["chunks"]
            );
        }
    }
    Ok(0)
}

pub fn chunks(home: &Path, a: &RagCollectionArgs) -> Result<i32> {
    sync(home, Some(&a.collection))?;
    let c = Collection::open(&root(home), &a.collection)?;
    for ch in &c.chunks {
        if a.json {
            println!("{}", serde_json::to_string(ch)?);
        } else {
            println!("{}\t{}\t{} tokens", ch.id, ch.section_path, ch.tokens);
        }
    }
    Ok(0)
}

pub fn delete(home: &Path, a: &RagDeleteArgs) -> Result<i32> {
    let base = sync(home, Some(&a.collection))?;
    let n = Collection::delete_documents(&root(home), &a.collection, &a.document)?;
    if n > 0 {
        publish(home, &a.collection, base.as_deref(), false)?;
    }
    if n == 0 {
        return Err(input_error(format!(
            "none of {} is a document of '{}' (see keel rag chunks)",
            a.document.join(", "),
            a.collection
        )));
    }
    if a.json {
        print_json(&json!({"collection": a.collection, "removed": n}));
    } else {
        println!("removed {n} document(s) from {}", a.collection);
    }
    Ok(0)
}

/// Ranked chunk ordinals per query for the three retrievers and the candidate lists for fusion.
struct Runs {
    qrels: Vec<keel_rag::eval::Qrel>,
    sparse: Vec<Vec<(u32, f32)>>,
    dense: Vec<Vec<(u32, f32)>>,
}

fn runs(c: &Collection, e: &dyn Embedder, qrels_path: &Path, quiet: bool) -> Result<Runs> {
    let text = std::fs::read_to_string(qrels_path)
        .with_context(|| format!("reading {}", qrels_path.display()))?;
    let qrels = parse_qrels(&text, &qrels_path.display().to_string())?;
    let pb = bar(qrels.len() as u64, "retrieving", quiet);
    let questions: Vec<&str> = qrels.iter().map(|q| q.query.as_str()).collect();
    // Questions longer than the model's window are embedded as the mean of their windows, as queries are.
    let vectors = keel_rag::embed::embed_queries(e, &questions)?;
    let mut sparse = Vec::new();
    let mut dense = Vec::new();
    for (q, v) in qrels.iter().zip(&vectors) {
        sparse.push(c.bm25(&q.query, 50)?);
        dense.push(c.dense(v, 50));
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(Runs {
        qrels,
        sparse,
        dense,
    })
}

fn evaluate(c: &Collection, r: &Runs, mode: Mode, weight: f64) -> Metrics {
    let per: Vec<_> = r
        .qrels
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let hits = keel_rag::collection::fuse(
                &r.sparse[i],
                &r.dense[i],
                mode,
                weight,
                c.manifest.config.rrf_k,
                50,
            );
            let ranked: Vec<&keel_rag::chunk::Chunk> =
                hits.iter().map(|h| &c.chunks[h.ord as usize]).collect();
            score(&judged(&ranked, &q.relevant), q.relevant.len())
        })
        .collect();
    mean(&per)
}

pub fn eval_retrieval(home: &Path, a: &EvalRetrievalArgs) -> Result<i32> {
    let started = Instant::now();
    let c = Collection::open(&root(home), &a.collection)?;
    let e = collection_embedder(&c, &a.embeddings, a.json)?;
    let r = runs(&c, e.as_ref(), &a.qrels, a.json)?;
    let w = c.manifest.config.fusion_weight;
    // Relevant IDs that name no chunk at all: a qrels file out of step with the collection.
    let ids: std::collections::HashSet<String> = c
        .chunks
        .iter()
        .flat_map(|ch| {
            [
                ch.document.clone(),
                format!("{}#{}", ch.document, ch.section),
            ]
        })
        .collect();
    let unmatched: Vec<&String> = r
        .qrels
        .iter()
        .flat_map(|q| q.relevant.iter())
        .filter(|id| !ids.contains(*id))
        .collect();
    if !unmatched.is_empty() && !a.json {
        eprintln!(
            "keel: {} relevant IDs match no chunk (first: {})",
            unmatched.len(),
            unmatched[0]
        );
    }
    let out = json!({
        "collection": a.collection,
        "queries": r.qrels.len(),
        "unmatched_ids": unmatched,
        "bm25": evaluate(&c, &r, Mode::Bm25, w),
        "dense": evaluate(&c, &r, Mode::Dense, w),
        "hybrid": evaluate(&c, &r, Mode::Hybrid, w),
        "rrf": evaluate(&c, &r, Mode::Rrf, w),
        "fusion_weight": w,
        "tuned": c.manifest.config.tuned,
        "seconds": started.elapsed().as_secs_f64(),
    });
    if a.json {
        print_json(&out);
    } else {
        println!(
            "{} queries against {} (fusion weight {w:.2}{})",
            r.qrels.len(),
            a.collection,
            if c.manifest.config.tuned {
                ", tuned"
            } else {
                ", default"
            }
        );
        println!(
            "{:<8} {:>9} {:>9} {:>8} {:>8}",
            "", "recall@5", "recall@10", "mrr@10", "ndcg@10"
        );
        for m in ["bm25", "dense", "hybrid", "rrf"] {
            let v = &out[m];
            println!(
                "{m:<8} {:>9.4} {:>9.4} {:>8.4} {:>8.4}",
                v["recall@5"].as_f64().unwrap_or(0.0),
                v["recall@10"].as_f64().unwrap_or(0.0),
                v["mrr@10"].as_f64().unwrap_or(0.0),
                v["ndcg@10"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(0)
}

pub fn tune(home: &Path, a: &RagTuneArgs) -> Result<i32> {
    let base = sync(home, Some(&a.collection))?;
    let mut c = Collection::open(&root(home), &a.collection)?;
    let e = collection_embedder(&c, &a.embeddings, a.json)?;
    let r = runs(&c, e.as_ref(), &a.qrels, a.json)?;
    let mut grid = Vec::new();
    for step in 0..=20 {
        let w = step as f64 / 20.0;
        grid.push((w, evaluate(&c, &r, Mode::Hybrid, w).ndcg_10));
    }
    // Best nDCG@10; when several weights tie, the middle one of them: the centre of the best plateau is the
    // choice least sensitive to which queries happened to be in the tuning set.
    let top = grid.iter().map(|g| g.1).fold(f64::MIN, f64::max);
    let tied: Vec<(f64, f64)> = grid
        .iter()
        .copied()
        .filter(|g| g.1 >= top - 1e-12)
        .collect();
    let best = tied[tied.len() / 2];
    c.set_fusion_weight(best.0)?;
    // The confidence floor, from the qrels questions (answerable) and the unanswerable ones.
    let calibration = match &a.unanswerable {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let cases = parse_answer_cases(&text, &path.display().to_string())?;
            if let Some(i) = cases.iter().position(|q| q.answerable()) {
                return Err(input_error(format!(
                    "{}: question {} lists answers; --unanswerable takes questions the documents do not answer",
                    path.display(),
                    i + 1
                )));
            }
            let questions: Vec<&str> = cases.iter().map(|q| q.query.as_str()).collect();
            let vectors = keel_rag::embed::embed_queries(e.as_ref(), &questions)?;
            let unanswerable: Vec<f32> = vectors.iter().map(|v| c.best_similarity(v)).collect();
            let answerable: Vec<f32> = r
                .dense
                .iter()
                .map(|d| d.first().map_or(0.0, |x| x.1))
                .collect();
            let cal = calibrate_floor(&answerable, &unanswerable)?;
            c.set_confidence_floor(cal.floor)?;
            Some(cal)
        }
    };
    // Shared collections: published generations are immutable, so the tuned one is published as a new one.
    publish(home, &a.collection, base.as_deref(), true)?;
    if a.json {
        print_json(
            &json!({"collection": a.collection, "fusion_weight": best.0, "weight": best.0, "ndcg@10": best.1,
            "grid": grid.iter().map(|(w, n)| json!({"weight": w, "ndcg@10": n})).collect::<Vec<_>>(),
            "confidence": calibration}),
        );
    } else {
        println!(
            "{}: fusion weight {:.2} (dense) / {:.2} (BM25), nDCG@10 {:.4} on {} queries",
            a.collection,
            best.0,
            1.0 - best.0,
            best.1,
            r.qrels.len()
        );
        if let Some(cal) = calibration {
            println!(
                "confidence floor {:.3}: answers {:.1}% of {} answerable questions, refuses {:.1}% of {} unanswerable",
                cal.floor,
                100.0 * cal.answered,
                cal.answerable,
                100.0 * cal.refused,
                cal.unanswerable
            );
        }
    }
    Ok(0)
}

pub fn eval_answers(home: &Path, a: &EvalAnswersArgs) -> Result<i32> {
    let started = Instant::now();
    let c = Collection::open(&root(home), &a.collection)?;
    let mut cases = Vec::new();
    for path in &a.questions {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        cases.extend(parse_answer_cases(&text, &path.display().to_string())?);
    }
    let e = collection_embedder(&c, &a.embeddings, a.json)?;
    let pb = bar(cases.len() as u64, "answering", a.json);
    let r = check_answers(
        &c,
        e.as_ref(),
        &cases,
        &QueryOptions::default(),
        &mut || pb.inc(1),
    )?;
    pb.finish_and_clear();
    if a.json {
        let mut out = serde_json::to_value(&r)?;
        out["collection"] = json!(a.collection);
        out["seconds"] = json!(started.elapsed().as_secs_f64());
        print_json(&out);
        return Ok(0);
    }
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    println!(
        "{} questions against {} (confidence floor {:.3}{})",
        r.questions,
        a.collection,
        r.confidence_floor,
        if r.calibrated {
            ", calibrated"
        } else {
            ", default"
        }
    );
    println!(
        "answerable   {:>4}: answered {}, expected span in the answer {} ({} of the answered), expected document cited {}",
        r.answerable,
        pct(r.answered),
        pct(r.span_rate),
        pct(r.span_rate_answered),
        pct(r.cited_document),
    );
    println!(
        "unanswerable {:>4}: refused {}",
        r.unanswerable,
        pct(r.refused)
    );
    let confident = r.checks.iter().filter(|c| c.confident).count();
    println!(
        "confident: true on {confident}, precision {}; confident: false on {}, precision {}",
        pct(r.confident_precision),
        r.questions - confident,
        pct(r.refusal_precision)
    );
    for ch in r.checks.iter().filter(|c| c.correct == Some(false)) {
        println!("  missed: {}", ch.query);
    }
    Ok(0)
}
