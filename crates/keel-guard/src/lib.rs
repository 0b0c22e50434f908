//! Keel's guardrails. [`Guard`] runs every detector over a text in microseconds, offline:
//! prompt injection (normalisation, a trained classifier with a calibrated threshold, rules), PII, secrets,
//! and, on model output, canary tokens and system-prompt leaks. [`policy`] turns findings into decisions
//! (allow, flag, redact, block) and redacts; [`stream::StreamGuard`] applies output guards to a token stream.
//!
//! The injection classifier and the PII lexicon travel together as one guard model ([`GuardModel`]), a
//! registry artifact like any other model.

#![forbid(unsafe_code)]

pub mod injection;
pub mod leak;
pub mod normalize;
pub mod pii;
pub mod policy;
pub mod secrets;
pub mod stream;
pub mod synth;

use serde::{Deserialize, Serialize};
use std::path::Path;

/// What can go wrong in the guard library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    Data { path: String, message: String },
    #[error("guard model: {0}")]
    Model(String),
}

impl Error {
    pub fn class(&self) -> keel_core::ErrorClass {
        match self {
            Error::Invalid(_) | Error::Data { .. } | Error::Model(_) => {
                keel_core::ErrorClass::Input
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One detected span (byte offsets into the scanned text).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
    pub score: f32,
    pub reason: String,
}

/// The injection verdict.
#[derive(Debug, Clone, Serialize)]
pub struct InjectionVerdict {
    pub score: f32,
    pub flagged: bool,
    pub threshold: f32,
    /// Rules that fired and what normalisation undid.
    pub reasons: Vec<String>,
}

/// Everything the detectors found in one text.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub injection: Option<InjectionVerdict>,
    pub pii: Vec<Finding>,
    pub secrets: Vec<Finding>,
    pub leaks: Vec<Finding>,
}

/// What to scan for.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions<'a> {
    pub injection: bool,
    pub pii: bool,
    pub secrets: bool,
    /// Output checks: canaries to look for, and the system prompt the output must not repeat.
    pub canaries: &'a [String],
    pub system_prompt: Option<&'a str>,
}

impl ScanOptions<'_> {
    /// Input checks: injection, PII, secrets.
    pub fn input() -> ScanOptions<'static> {
        ScanOptions {
            injection: true,
            pii: true,
            secrets: true,
            canaries: &[],
            system_prompt: None,
        }
    }
}

/// Format version of the guard model artifact.
pub const MODEL_FORMAT: u32 = 1;

/// The guard model as stored in the registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardModel {
    pub format: u32,
    pub classifier: injection::StoredClassifier,
    /// Calibrated on the calibration split to `target_fpr`.
    pub threshold: f32,
    /// For documents scanned sentence by sentence (RAG ingest): calibrated on benign document sentences.
    pub document_threshold: f32,
    pub target_fpr: f64,
    pub params: injection::TrainParams,
    pub lexicon: pii::StoredLexicon,
}

impl GuardModel {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = b"KEELGRD1".to_vec();
        out.extend(postcard::to_allocvec(self).expect("guard model serialises"));
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<GuardModel> {
        let body = b
            .strip_prefix(b"KEELGRD1")
            .ok_or_else(|| Error::Model("not a Keel guard model (bad magic)".into()))?;
        let m: GuardModel = postcard::from_bytes(body)
            .map_err(|e| Error::Model(format!("corrupt guard model: {e}")))?;
        if m.format != MODEL_FORMAT {
            return Err(Error::Model(format!(
                "format {} is not supported (this Keel reads {MODEL_FORMAT})",
                m.format
            )));
        }
        Ok(m)
    }
}

/// A ready-to-use guard: the classifier expanded, the lexicon indexed.
pub struct Guard {
    classifier: injection::Classifier,
    threshold: f32,
    document_threshold: f32,
    lexicon: pii::Lexicon,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Guard {
    pub fn new(model: &GuardModel) -> Result<Guard> {
        Ok(Guard {
            classifier: injection::Classifier::from_stored(&model.classifier)
                .map_err(Error::Model)?,
            threshold: model.threshold,
            document_threshold: model.document_threshold,
            lexicon: pii::Lexicon::new(&model.lexicon),
        })
    }

    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Injection score (max over the normalised text and its decoded payloads) with rules and reasons.
    pub fn injection(&self, text: &str) -> InjectionVerdict {
        let n = normalize::normalize(text);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let mut score = self.classifier.score_normalized(&n.text, &mut s);
            let mut reasons: Vec<String> = Vec::new();
            for d in &n.decoded {
                let ds = self.classifier.score_normalized(&d.text, &mut s);
                if ds > self.threshold {
                    reasons.push(format!("{} payload classified as injection", d.encoding));
                }
                score = score.max(ds);
            }
            let rules = injection::rules(&n);
            if !rules.is_empty() {
                score = score.max(1.0);
            }
            for r in rules {
                reasons.push(format!("rule: {r}"));
            }
            let flagged = score > self.threshold;
            if flagged && reasons.is_empty() {
                reasons.push("classifier".into());
            }
            if flagged {
                reasons.extend(n.notes.iter().map(|s| s.to_string()));
            }
            InjectionVerdict {
                score,
                flagged,
                threshold: self.threshold,
                reasons,
            }
        })
    }

    /// Indirect injection in a document passage: each sentence is scored (documents are long; the classifier
    /// knows prompts), flagged above the document threshold or when a rule fires anywhere.
    pub fn document_injection(&self, text: &str) -> InjectionVerdict {
        let mut best = InjectionVerdict {
            score: 0.0,
            flagged: false,
            threshold: self.document_threshold,
            reasons: Vec::new(),
        };
        for s in sentences(text) {
            let v = self.injection(s);
            let rule = v.reasons.iter().any(|r| r.starts_with("rule:"));
            if v.score > best.score || (rule && !best.flagged) {
                best = InjectionVerdict {
                    score: v.score,
                    flagged: rule || v.score > self.document_threshold,
                    threshold: self.document_threshold,
                    reasons: v.reasons,
                };
                if best.flagged && !best.reasons.is_empty() {
                    let quoted: String = s.chars().take(80).collect();
                    best.reasons.push(format!("sentence: \"{quoted}\""));
                }
            }
        }
        best
    }

    /// Runs the chosen detectors over `text`.
    pub fn scan(&self, text: &str, opts: &ScanOptions) -> Report {
        let mut r = Report::default();
        if opts.injection {
            r.injection = Some(self.injection(text));
        }
        if opts.pii {
            r.pii = pii::detect(text, &self.lexicon);
        }
        if opts.secrets {
            r.secrets = secrets::detect(text);
        }
        if !opts.canaries.is_empty() {
            r.leaks.extend(leak::canaries(text, opts.canaries));
        }
        if let Some(sys) = opts.system_prompt
            && let Some(f) = leak::system_prompt_overlap(text, sys, 8)
        {
            r.leaks.push(f);
        }
        r
    }

    pub fn pii(&self, text: &str) -> Vec<Finding> {
        pii::detect(text, &self.lexicon)
    }
}

/// Sentences of prose: split at line breaks between paragraphs and after `.`, `!` or `?` followed by
/// white space; pieces under 12 characters are dropped.
pub fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n")
        .flat_map(|para| {
            let mut out = Vec::new();
            let mut start = 0;
            let b = para.as_bytes();
            for i in 0..b.len() {
                if matches!(b[i], b'.' | b'!' | b'?')
                    && b.get(i + 1).is_some_and(u8::is_ascii_whitespace)
                {
                    out.push(&para[start..=i]);
                    start = i + 1;
                }
            }
            out.push(&para[start..]);
            out
        })
        .map(str::trim)
        .filter(|s| s.len() >= 12)
}

/// Byte offset → character offset (what the JSON interfaces report).
pub fn char_offset(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].chars().count()
}

/// The JSON shape `keel guard scan --json` and `POST /v1/guard/scan` print: spans in character offsets.
pub fn report_json(text: &str, r: &Report, d: &policy::Decision) -> serde_json::Value {
    let spans = |fs: &[Finding]| -> serde_json::Value {
        fs.iter()
            .map(|f| {
                serde_json::json!({
                    "type": f.kind,
                    "start": char_offset(text, f.start),
                    "end": char_offset(text, f.end),
                    "score": f.score,
                    "reason": f.reason,
                })
            })
            .collect()
    };
    let mut v = serde_json::json!({
        "pii": spans(&r.pii),
        "secrets": spans(&r.secrets),
        "leaks": spans(&r.leaks),
        "blocked": d.blocked,
        "action": d.action.as_str(),
        "reasons": d.reasons,
    });
    if let Some(i) = &r.injection {
        v["injection"] = serde_json::json!({
            "score": i.score, "flagged": i.flagged, "threshold": i.threshold, "reasons": i.reasons,
        });
    }
    if d.action >= policy::Action::Redact {
        v["redacted"] = d.text.clone().into();
    }
    v
}

/// Reads a labelled CSV (`text,label`, label 0/1 or true/false) with row numbers in errors.
pub fn read_labelled(path: &Path) -> Result<Vec<injection::Example>> {
    let data = |message: String| Error::Data {
        path: path.display().to_string(),
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(|e| data(format!("cannot read: {e}")))?;
    let headers = rdr
        .headers()
        .map_err(|e| data(format!("header: {e}")))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let (Some(ti), Some(li)) = (col("text"), col("label")) else {
        return Err(data(format!(
            "needs columns `text` and `label`; found {:?}",
            headers.iter().collect::<Vec<_>>()
        )));
    };
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 2;
        let rec = rec.map_err(|e| data(format!("row {row}: {e}")))?;
        let label = match rec.get(li).map(str::trim) {
            Some("1") | Some("true") | Some("True") => true,
            Some("0") | Some("false") | Some("False") => false,
            other => {
                return Err(data(format!(
                    "row {row}, column `label`: {other:?} is not 0 or 1"
                )));
            }
        };
        out.push(injection::Example {
            text: rec.get(ti).unwrap_or_default().to_string(),
            label,
        });
    }
    if out.is_empty() {
        return Err(data("no rows".into()));
    }
    Ok(out)
}

/// Trains a guard model: the classifier on `train` plus up to `params.benign` of `documents` (benign
/// document sentences) as extra negatives, the threshold on `calibration`, the document threshold on the
/// remaining document sentences, the lexicon from the word list. Returns the model and its evaluation on the
/// calibration split.
pub fn train_model(
    train: &[injection::Example],
    calibration: &[injection::Example],
    documents: &[String],
    word_list: &str,
    params: &injection::TrainParams,
) -> Result<(GuardModel, injection::Evaluation)> {
    if !(0.0..0.5).contains(&params.target_fpr) || !(0.0..0.5).contains(&params.document_fpr) {
        return Err(Error::Invalid(format!(
            "false-positive rate targets ({}, {}) must be in [0, 0.5)",
            params.target_fpr, params.document_fpr
        )));
    }
    for (what, set) in [("training", train), ("calibration", calibration)] {
        let pos = set.iter().filter(|e| e.label).count();
        if pos == 0 || pos == set.len() {
            return Err(Error::Invalid(format!(
                "the {what} set needs both labels (it has {pos} of {} positive)",
                set.len()
            )));
        }
    }
    // Documents: a seeded shuffle, the first `benign` for training, the rest for the document threshold.
    let mut docs: Vec<&String> = documents.iter().collect();
    {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        docs.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    }
    let n_train = params.benign.min(docs.len() / 2);
    let mut all = train.to_vec();
    all.extend(docs[..n_train].iter().map(|t| injection::Example {
        text: (*t).clone(),
        label: false,
    }));
    let classifier = injection::train(&all, params);
    let mut model = GuardModel {
        format: MODEL_FORMAT,
        classifier: classifier.to_stored(),
        threshold: 0.5,
        document_threshold: 0.99,
        target_fpr: params.target_fpr,
        params: params.clone(),
        lexicon: pii::StoredLexicon::from_word_list(word_list),
    };
    let guard = Guard::new(&model)?;
    let scores: Vec<f32> = calibration
        .iter()
        .map(|e| guard.injection(&e.text).score)
        .collect();
    let negs: Vec<f32> = calibration
        .iter()
        .zip(&scores)
        .filter(|(e, _)| !e.label)
        .map(|(_, &s)| s)
        .collect();
    model.threshold = injection::calibrate(&negs, params.target_fpr);
    let doc_scores: Vec<f32> = docs[n_train..]
        .iter()
        .map(|t| guard.injection(t).score)
        .collect();
    if !doc_scores.is_empty() {
        // Never below the prompt threshold: documents get the stricter of the two.
        model.document_threshold =
            injection::calibrate(&doc_scores, params.document_fpr).max(model.threshold);
    }
    let labels: Vec<bool> = calibration.iter().map(|e| e.label).collect();
    let eval = injection::evaluate(&labels, &scores, model.threshold);
    Ok((model, eval))
}
