//! Structure-aware chunking: blocks grouped by section, packed to a token budget with overlap, never across a
//! section boundary; a block larger than the budget is split at sentences (prose) or lines (code), then words.
//! Every chunk keeps its provenance: document, section title and path, byte range in the source.

use serde::{Deserialize, Serialize};

use crate::doc::{Block, BlockKind};

/// Chunking settings (tokens are counted by the embedding model's tokenizer).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkOptions {
    /// Most tokens of text in one chunk (its section title is metadata and not counted).
    pub max_tokens: usize,
    /// Tokens of the previous chunk repeated at the start of the next one in the same section.
    pub overlap_tokens: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            max_tokens: 200,
            overlap_tokens: 32,
        }
    }
}

/// One retrievable piece of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// `document#ordinal`, stable while the document is unchanged.
    pub id: String,
    /// Path of the document relative to the ingested folder.
    pub document: String,
    /// The innermost section title ("" before the first heading).
    pub section: String,
    /// Titles from the outermost section in, joined by " > ".
    pub section_path: String,
    /// Byte range of the chunk's blocks in the source file.
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub tokens: usize,
    /// Why an injection screen at ingest distrusts this chunk (absent when it passed or was not screened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrusted: Option<String>,
    /// Kept for review but never retrieved (an injection screen quarantined it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
}

/// How long a collection's chunks are: the count, quantiles and mean of one length measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthDistribution {
    pub count: usize,
    pub min: usize,
    pub p10: usize,
    pub median: usize,
    pub p90: usize,
    pub max: usize,
    pub mean: f64,
}

impl LengthDistribution {
    /// The distribution of `lengths` (nearest-rank quantiles; all zero when empty).
    pub fn of(mut lengths: Vec<usize>) -> LengthDistribution {
        if lengths.is_empty() {
            return LengthDistribution::default();
        }
        lengths.sort_unstable();
        let n = lengths.len();
        let q = |p: f64| lengths[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        LengthDistribution {
            count: n,
            min: lengths[0],
            p10: q(0.1),
            median: q(0.5),
            p90: q(0.9),
            max: lengths[n - 1],
            mean: lengths.iter().sum::<usize>() as f64 / n as f64,
        }
    }
}

/// Chunk lengths in the embedding model's tokens and in words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkLengths {
    pub tokens: LengthDistribution,
    pub words: LengthDistribution,
}

impl ChunkLengths {
    pub fn of(chunks: &[Chunk]) -> ChunkLengths {
        ChunkLengths {
            tokens: LengthDistribution::of(chunks.iter().map(|c| c.tokens).collect()),
            words: LengthDistribution::of(
                chunks
                    .iter()
                    .map(|c| c.text.split_whitespace().count())
                    .collect(),
            ),
        }
    }
}

/// Sentence byte ranges in `text`: ends at `.`, `!` or `?` (plus closing quotes or brackets) followed by
/// whitespace and the start of a new sentence; abbreviations, initials and decimals do not end one.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    const ABBREV: [&str; 14] = [
        "e.g", "i.e", "etc", "vs", "mr", "mrs", "dr", "cf", "approx", "no", "fig", "eq", "st", "al",
    ];
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'.' || c == b'!' || c == b'?' {
            let mut j = i + 1;
            while j < b.len() && matches!(b[j], b'"' | b'\'' | b')' | b']') {
                j += 1;
            }
            let at_end = j >= b.len();
            let space = !at_end && b[j].is_ascii_whitespace();
            if at_end || space {
                let mut k = j;
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                let next_ok = k >= b.len()
                    || b[k].is_ascii_uppercase()
                    || b[k].is_ascii_digit()
                    || matches!(b[k], b'"' | b'\'' | b'(' | b'`' | b'*')
                    || b[k] >= 0x80;
                let word_start = text[..i]
                    .rfind(|ch: char| ch.is_whitespace() || ch == '(')
                    .map_or(0, |p| p + 1);
                let word = text[word_start..i].to_ascii_lowercase();
                let abbrev = c == b'.'
                    && (ABBREV.contains(&word.as_str())
                        || (word.len() == 1 && word.bytes().all(|x| x.is_ascii_alphabetic())));
                if next_ok && !abbrev {
                    if !text[start..j].trim().is_empty() {
                        out.push(trimmed(text, start, j));
                    }
                    start = k;
                    i = k;
                    continue;
                }
            }
        }
        i += 1;
    }
    if start < b.len() && !text[start..].trim().is_empty() {
        out.push(trimmed(text, start, b.len()));
    }
    out
}

fn trimmed(text: &str, start: usize, end: usize) -> (usize, usize) {
    let s = &text[start..end];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    (start + lead, end - trail)
}

/// The block whole when it fits `whole_max` tokens, else pieces of at most `max` tokens: sentences (or lines,
/// for code), then words.
fn pieces(
    block: &Block,
    whole_max: usize,
    max: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<String> {
    let whole = count(&block.text);
    if whole <= whole_max {
        return vec![block.text.clone()];
    }
    let units: Vec<String> = if block.kind == BlockKind::Code {
        block.text.lines().map(str::to_string).collect()
    } else {
        sentences(&block.text)
            .into_iter()
            .map(|(s, e)| block.text[s..e].to_string())
            .collect()
    };
    let sep = if block.kind == BlockKind::Code {
        "\n"
    } else {
        " "
    };
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for u in units {
        let units_of_u: Vec<String> = if count(&u) > max {
            // Words, packed.
            let mut parts = Vec::new();
            let mut p = String::new();
            for w in u.split_whitespace() {
                let cand = if p.is_empty() {
                    w.to_string()
                } else {
                    format!("{p} {w}")
                };
                if count(&cand) > max && !p.is_empty() {
                    parts.push(std::mem::take(&mut p));
                    p = w.to_string();
                } else {
                    p = cand;
                }
            }
            if !p.is_empty() {
                parts.push(p);
            }
            parts
        } else {
            vec![u]
        };
        for u in units_of_u {
            let cand = if cur.is_empty() {
                u.clone()
            } else {
                format!("{cur}{sep}{u}")
            };
            if count(&cand) > max && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
                cur = u;
            } else {
                cur = cand;
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The tail of `text` of at most `tokens` tokens, starting at a sentence (or word) boundary.
fn tail(text: &str, tokens: usize, count: &dyn Fn(&str) -> usize) -> String {
    if tokens == 0 {
        return String::new();
    }
    let mut out = String::new();
    for (s, e) in sentences(text).into_iter().rev() {
        let cand = if out.is_empty() {
            text[s..e].to_string()
        } else {
            format!("{} {out}", &text[s..e])
        };
        if count(&cand) > tokens {
            break;
        }
        out = cand;
    }
    if out.is_empty() {
        // No whole sentence fits: the last words.
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut k = words.len();
        while k > 0 && count(&words[k - 1..].join(" ")) <= tokens {
            k -= 1;
        }
        out = words[k..].join(" ");
    }
    out
}

/// Chunks one document's blocks.
pub fn chunk(
    document: &str,
    blocks: &[Block],
    opts: &ChunkOptions,
    count: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let max = opts.max_tokens.max(8);
    let overlap = opts.overlap_tokens.min(max / 2);
    let mut out: Vec<Chunk> = Vec::new();
    let mut titles: Vec<(u8, String)> = Vec::new();
    // The section being filled: its body blocks.
    let mut body: Vec<&Block> = Vec::new();
    let emit = |titles: &[(u8, String)], body: &mut Vec<&Block>, out: &mut Vec<Chunk>| {
        if body.is_empty() {
            return;
        }
        let section = titles.last().map(|t| t.1.clone()).unwrap_or_default();
        let section_path = titles
            .iter()
            .map(|t| t.1.as_str())
            .collect::<Vec<_>>()
            .join(" > ");
        let mut cur = String::new();
        let mut cur_start = usize::MAX;
        let mut cur_end = 0;
        let mut carried = false;
        let push = |text: &str, start: usize, end: usize, out: &mut Vec<Chunk>| {
            let n = out.len();
            out.push(Chunk {
                id: format!("{document}#{n}"),
                document: document.to_string(),
                section: section.clone(),
                section_path: section_path.clone(),
                start,
                end,
                text: text.to_string(),
                untrusted: None,
                quarantined: false,
                tokens: count(text),
            });
        };
        for b in body.drain(..) {
            // Pieces of an oversized block leave room for the overlap carried into the next chunk.
            for p in pieces(b, max, max - overlap, count) {
                let sep = if b.kind == BlockKind::Code || cur.ends_with('\n') {
                    "\n"
                } else {
                    "\n\n"
                };
                let cand = if cur.is_empty() {
                    p.clone()
                } else {
                    format!("{cur}{sep}{p}")
                };
                if count(&cand) > max && !cur.is_empty() && !(carried && cur_start == usize::MAX) {
                    push(
                        &cur,
                        cur_start.min(b.start),
                        cur_end.max(cur_start.min(b.start)),
                        out,
                    );
                    let t = tail(&cur, overlap, count);
                    cur = if t.is_empty() || count(&format!("{t}\n\n{p}")) > max {
                        p.clone()
                    } else {
                        format!("{t}\n\n{p}")
                    };
                    carried = true;
                    cur_start = b.start;
                    cur_end = b.end;
                } else {
                    cur = cand;
                    cur_start = cur_start.min(b.start);
                    cur_end = cur_end.max(b.end);
                }
            }
        }
        if !cur.trim().is_empty() {
            push(&cur, cur_start, cur_end, out);
        }
    };
    for b in blocks {
        if let BlockKind::Heading { level } = b.kind {
            emit(&titles, &mut body, &mut out);
            while titles.last().is_some_and(|t| t.0 >= level) {
                titles.pop();
            }
            titles.push((level, b.text.clone()));
        } else {
            body.push(b);
        }
    }
    emit(&titles, &mut body, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{Format, parse};

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn length_distributions_use_nearest_ranks() {
        let d = LengthDistribution::of((1..=10).rev().collect());
        assert_eq!(
            (d.count, d.min, d.p10, d.median, d.p90, d.max),
            (10, 1, 1, 5, 9, 10)
        );
        assert!((d.mean - 5.5).abs() < 1e-12);
        assert_eq!(
            LengthDistribution::of(vec![]),
            LengthDistribution::default()
        );
    }

    #[test]
    fn sentences_skip_abbreviations_and_decimals() {
        let t = "Use e.g. a list. Python 3.11 is fast! Is it? Yes. Mr. Smith said so. J. R. R. Tolkien wrote it";
        let s: Vec<&str> = sentences(t).iter().map(|&(a, b)| &t[a..b]).collect();
        assert_eq!(
            s,
            [
                "Use e.g. a list.",
                "Python 3.11 is fast!",
                "Is it?",
                "Yes.",
                "Mr. Smith said so.",
                "J. R. R. Tolkien wrote it"
            ]
        );
    }

    #[test]
    fn chunks_follow_sections_and_fit_the_budget_with_overlap() {
        let long: String = (0..30)
            .map(|i| format!("Sentence number {i} has exactly seven words."))
            .collect::<Vec<_>>()
            .join(" ");
        let src = format!(
            "Top\n===\n\nIntro paragraph here.\n\nFirst question?\n---------------\n\n{long}\n\nSecond question?\n----------------\n\nShort answer.\n"
        );
        let blocks = parse(&src, Format::Rst);
        let opts = ChunkOptions {
            max_tokens: 50,
            overlap_tokens: 10,
        };
        let chunks = chunk("faq.rst.txt", &blocks, &opts, &words);
        assert_eq!(chunks[0].section, "Top");
        assert_eq!(chunks[0].text, "Intro paragraph here.");
        let first: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| c.section == "First question?")
            .collect();
        // 210 words at ≤ 50 per chunk with overlap: at least five chunks, none over budget.
        assert!(first.len() >= 5, "{}", first.len());
        for c in &first {
            assert!(c.tokens <= 50, "{} tokens", c.tokens);
            assert_eq!(c.section_path, "Top > First question?");
            assert!(src[c.start..c.end].contains("Sentence number"));
        }
        // Overlap: each later chunk starts with the last sentence of the one before.
        for w in first.windows(2) {
            let last_sentence = {
                let s = sentences(&w[0].text);
                let (a, b) = *s.last().unwrap();
                w[0].text[a..b].to_string()
            };
            assert!(
                w[1].text.starts_with(&last_sentence),
                "{:?} / {:?}",
                w[0].text,
                w[1].text
            );
        }
        // Every sentence of the long paragraph is in some chunk.
        for i in 0..30 {
            let s = format!("Sentence number {i} has");
            assert!(first.iter().any(|c| c.text.contains(&s)), "{s}");
        }
        let last = chunks.last().unwrap();
        assert_eq!(
            (last.section.as_str(), last.text.as_str()),
            ("Second question?", "Short answer.")
        );
        // Ids are unique and ordered.
        let ids: std::collections::HashSet<&str> = chunks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), chunks.len());
        assert_eq!(chunks[1].id, "faq.rst.txt#1");
    }
}
