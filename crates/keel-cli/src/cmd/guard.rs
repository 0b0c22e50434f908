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
    Ok(Guard::new(&model)?)
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
    let new = NewVersion {
        model: a.name.clone(),
        description: "Keel guard: prompt-injection classifier and PII lexicon".into(),
        kind: keel_app::guard::GUARD_KIND.into(),
        objective: "binary".into(),
        model_bytes: model.to_bytes(),
        params: serde_json::to_value(&params)?,
        metrics: metrics.clone(),
        schema: json!({"input": "text"}),
        card,
        dataset_hash: dataset_hash.clone(),
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

/// Sentences of every text, reST or Markdown file under `path` (sorted walk), for benign training text.
fn document_sentences(path: &Path) -> Result<Vec<String>> {
    let (_, files) = keel_rag::collection::walk(path)?;
    let mut out = Vec::new();
    for (_, f) in files.into_iter().filter(|(_, p)| {
        p.extension()
            .is_some_and(|e| e == "txt" || e == "rst" || e == "md")
    }) {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let flat: String = text
            .split("\n\n")
            .map(|para| para.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n\n");
        out.extend(
            keel_guard::sentences(&flat)
                .filter(|s| {
                    (20..300).contains(&s.len())
                        && s.chars().filter(|c| c.is_lowercase()).count() >= 3
                })
                .map(String::from),
        );
    }
    if out.is_empty() {
        return Err(input_error(format!(
            "{}: no sentences found in text, reST or Markdown files",
            path.display()
        )));
    }
    Ok(out)
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
<table><tr><td>Training</td><td>{trp} ({trn} rows, sha256 {trh})</td></tr><tr><td>Calibration</td><td>{cap} ({can} rows)</td></tr><tr><td>Word list</td><td>{wl} words</td></tr></table>
<h2>Method</h2><p>{method}</p>
<h2>Limitations</h2><ul>{limitations}</ul>"#,
        use_ = esc(card["intended_use"].as_str().unwrap_or("")),
        b1 = bar("true-positive rate", c["tpr"].as_f64().unwrap_or(0.0)),
        b2 = bar("false-positive rate", c["fpr"].as_f64().unwrap_or(0.0)),
        b3 = bar("precision", c["precision"].as_f64().unwrap_or(0.0)),
        auc = num(&c["roc_auc"]),
        f1 = num(&c["f1"]),
        thr = num(&card["threshold"]),
        n = c["n"],
        trp = esc(data["train"]["path"].as_str().unwrap_or("")),
        trn = data["train"]["rows"],
        trh = esc(data["train"]["sha256"].as_str().unwrap_or("")),
        cap = esc(data["calibration"]["path"].as_str().unwrap_or("")),
        can = data["calibration"]["rows"],
        wl = data["word_list"]["words"],
        method = esc(card["method"].as_str().unwrap_or("")),
    )
}

pub fn eval(home: &Path, a: &GuardEvalArgs) -> Result<i32> {
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
