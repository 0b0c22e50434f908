//! Answers from retrieved chunks: extractive (the sentences that best answer the question, each citing its
//! chunk), a refusal when retrieval confidence is low, and the groundedness check of any answer's sentences
//! against the chunks they cite.

use serde::Serialize;
use std::collections::{HashMap, HashSet};

use crate::chunk::{Chunk, sentences};

const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "do", "does",
    "doing", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it",
    "its", "me", "my", "of", "on", "or", "our", "should", "so", "than", "that", "the", "their",
    "them", "then", "there", "these", "they", "this", "those", "to", "too", "us", "was", "we",
    "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you",
    "your", "there's", "what's", "don't", "get", "use", "using", "way", "there", "any", "some",
    "about", "also", "not", "no", "yes",
];

/// Lower-cased content words with a light suffix stemmer (plural, -ing, -ed), stop words removed.
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP.contains(&w.as_str()))
        .map(|w| stem(&w))
        .collect()
}

fn stem(w: &str) -> String {
    let strip = |s: &str, suf: &str, min: usize| {
        s.strip_suffix(suf)
            .filter(|r| r.chars().count() >= min)
            .map(str::to_string)
    };
    strip(w, "ies", 3)
        .map(|r| r + "y")
        .or_else(|| strip(w, "ing", 3))
        .or_else(|| strip(w, "ed", 3))
        .or_else(|| strip(w, "es", 3).filter(|r| r.ends_with(['s', 'x', 'z', 'h'])))
        .or_else(|| strip(w, "s", 3).filter(|r| !r.ends_with('s')))
        .unwrap_or_else(|| w.to_string())
}

/// Document frequencies of terms over a collection's chunks, for IDF weights.
#[derive(Debug, Default, Clone)]
pub struct TermStats {
    pub docs: usize,
    pub df: HashMap<String, u32>,
}

impl TermStats {
    pub fn of(chunks: &[Chunk]) -> TermStats {
        let mut df: HashMap<String, u32> = HashMap::new();
        for c in chunks {
            let set: HashSet<String> = terms(&c.text)
                .into_iter()
                .chain(terms(&c.section))
                .collect();
            for t in set {
                *df.entry(t).or_default() += 1;
            }
        }
        TermStats {
            docs: chunks.len(),
            df,
        }
    }

    pub fn idf(&self, t: &str) -> f64 {
        let df = f64::from(self.df.get(t).copied().unwrap_or(0));
        ((self.docs as f64 - df + 0.5) / (df + 0.5) + 1.0).ln()
    }
}

/// One sentence of an answer and what supports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerSentence {
    pub text: String,
    /// Whether the cited chunks support it.
    pub supported: bool,
    /// The chunk it cites (extractive: the chunk it was taken from).
    pub chunk_id: Option<String>,
    /// Share of the sentence's content words found in the chunk that supports it best (0..1).
    pub support: f64,
}

/// A retrieved chunk with its fused score, as the answerer sees it.
pub struct Retrieved<'a> {
    pub chunk: &'a Chunk,
    pub score: f64,
}

/// Whether the question asks for code (then code lines and command listings may answer it).
pub fn asks_for_code(question: &str) -> bool {
    const WORDS: [&str; 9] = [
        "code", "example", "snippet", "command", "syntax", "script", "usage", "invoke", "flag",
    ];
    question.contains('`')
        || question
            .split(|c: char| !c.is_alphanumeric())
            .map(str::to_lowercase)
            .any(|w| WORDS.iter().any(|k| w == *k || w == format!("{k}s")))
}

/// Why a sentence does not read as prose, if it does not: an option list (`-a, --all …`), a code or shell
/// line, markup left over, or mostly symbols.
pub fn not_prose(sentence: &str) -> Option<&'static str> {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let options = words
        .iter()
        .filter(|w| {
            let w = w.trim_end_matches([',', ';', ':']);
            (w.starts_with("--") && w.len() > 2) || (w.len() == 2 && w.starts_with('-'))
        })
        .count();
    if options >= 2 {
        return Some("an option list");
    }
    let lines: Vec<&str> = sentence
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.iter().any(|l| {
        l.starts_with("$ ") || l.starts_with(">>>") || l.starts_with("...") || l.starts_with("# ")
    }) {
        return Some("a shell or interpreter line");
    }
    let chars = sentence
        .chars()
        .filter(|c| !c.is_whitespace())
        .count()
        .max(1);
    let symbols = sentence
        .chars()
        .filter(|c| {
            matches!(
                c,
                '{' | '}'
                    | '('
                    | ')'
                    | '['
                    | ']'
                    | ';'
                    | '='
                    | '<'
                    | '>'
                    | '|'
                    | '$'
                    | '\\'
                    | '*'
                    | '&'
            )
        })
        .count();
    if symbols * 8 > chars {
        return Some("code");
    }
    if lines.len() > 2
        && lines
            .iter()
            .filter(|l| l.starts_with(['-', '*', '+']))
            .count()
            > 1
    {
        return Some("a list");
    }
    None
}

/// Byte ranges of the paragraphs of `text`, each with whether it is indented (a literal or code block): a
/// blank line ends a paragraph, and so does a change between indented lines and lines at the margin (prose
/// that introduces a code block with a colon and no blank line stays apart from the code).
fn paragraphs(text: &str) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::new();
    let mut push = |start: usize, end: usize, indented: bool| {
        if !text[start..end].trim().is_empty() {
            out.push((start, end, indented));
        }
    };
    let mut start = 0;
    let mut offset = 0;
    let mut indented = None;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            push(start, offset, indented.unwrap_or(false));
            start = offset + line.len();
            indented = None;
        } else {
            let this = line.starts_with([' ', '\t']);
            if indented.is_some_and(|i| i != this) {
                push(start, offset, indented.unwrap_or(false));
                start = offset;
            }
            indented = Some(this);
        }
        offset += line.len();
    }
    push(start, text.len(), indented.unwrap_or(false));
    out
}

/// A sentence as an answer shows it: control characters gone, line breaks and runs of spaces as one space.
pub fn clean_sentence(sentence: &str) -> String {
    sentence
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The best `max_sentences` sentences of the top chunks for `question`, ordered as they appear (chunk rank,
/// then position), each citing its chunk. Sentences that are not prose (option lists, code and shell lines,
/// symbol runs) are left out unless the question asks for code; the sentence that names the question's rarest
/// term (its subject, most often) is preferred over its neighbours; the text is shown cleaned.
pub fn extractive(
    question: &str,
    hits: &[Retrieved<'_>],
    stats: &TermStats,
    max_sentences: usize,
) -> Vec<AnswerSentence> {
    let q: HashSet<String> = terms(question).into_iter().collect();
    let q_weight: f64 = q.iter().map(|t| stats.idf(t)).sum::<f64>().max(1e-9);
    // The question's most specific term: the one fewest chunks contain (ties by the term itself).
    let subject = q
        .iter()
        .filter(|t| stats.df.get(t.as_str()).is_some_and(|&d| d > 0))
        .max_by(|a, b| stats.idf(a).total_cmp(&stats.idf(b)).then(b.cmp(a)))
        .cloned();
    let code_ok = asks_for_code(question);
    let top_score = hits.first().map_or(1.0, |h| h.score.max(1e-9));
    let mut scored: Vec<(f64, usize, usize, String)> = Vec::new();
    for (rank, h) in hits.iter().take(3).enumerate() {
        // Paragraphs first (a blank line always ends a sentence: list items and code blocks stand alone),
        // then sentences within each.
        let text = h.chunk.text.replace("\r\n", "\n");
        let paras = paragraphs(&text);
        // Indented paragraphs are literal or code blocks only next to paragraphs at the margin: a plain-text
        // document indented throughout is prose.
        let at_margin = paras.iter().any(|p| !p.2);
        let spans: Vec<(usize, usize, bool)> = paras
            .into_iter()
            .map(|(ps, pe, indented)| (ps, pe, indented && at_margin))
            .flat_map(|(ps, pe, indented)| {
                sentences(&text[ps..pe])
                    .into_iter()
                    .map(move |(s, e)| (ps + s, ps + e, indented))
            })
            .collect();
        for (pos, (s, e, indented)) in spans.into_iter().enumerate() {
            let raw = text[s..e].trim();
            if !code_ok && (indented || not_prose(raw).is_some()) {
                continue;
            }
            // A sentence that starts in lower case is the tail of one cut off before the chunk (the overlap
            // with the previous chunk) or a fragment of markup: not an answer on its own.
            if raw.starts_with(|c: char| c.is_lowercase()) && !code_ok {
                continue;
            }
            let sent = clean_sentence(raw);
            if sent.len() < 12 || sent.split_whitespace().count() < 3 {
                continue;
            }
            let st: HashSet<String> = terms(&sent).into_iter().collect();
            let overlap: f64 = q.intersection(&st).map(|t| stats.idf(t)).sum::<f64>() / q_weight;
            let names_subject = subject.as_ref().is_some_and(|t| st.contains(t));
            // Retrieval rank, query-term coverage, the subject named, and a nudge towards a section's opening
            // sentences.
            let score = 0.5 * h.score / top_score
                + overlap
                + if names_subject { 0.25 } else { 0.0 }
                + 0.15 / (1.0 + pos as f64);
            scored.push((score, rank, pos, sent));
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    // Overlapping chunks repeat sentences: one that another chosen sentence contains (or that contains it)
    // adds nothing.
    let mut picked: Vec<(f64, usize, usize, String)> = Vec::new();
    for cand in scored {
        if picked.len() >= max_sentences.max(1) {
            break;
        }
        let c = cand.3.to_lowercase();
        if picked.iter().any(|p| {
            let p = p.3.to_lowercase();
            p.contains(&c) || c.contains(&p)
        }) {
            continue;
        }
        picked.push(cand);
    }
    let mut scored = picked;
    scored.sort_by_key(|s| (s.1, s.2));
    scored
        .into_iter()
        .map(|(_, rank, _, text)| AnswerSentence {
            support: 1.0,
            supported: true,
            chunk_id: Some(hits[rank].chunk.id.clone()),
            text,
        })
        .collect()
}

/// Checks each sentence against the chunks: supported when at least `threshold` of its content words occur in
/// one chunk it may cite (its own citation when it has one, else any of `chunks`).
pub fn ground(
    answer: &[(String, Option<String>)],
    chunks: &[&Chunk],
    threshold: f64,
) -> Vec<AnswerSentence> {
    let chunk_terms: Vec<(&Chunk, HashSet<String>)> = chunks
        .iter()
        .map(|c| {
            (
                *c,
                terms(&c.text)
                    .into_iter()
                    .chain(terms(&c.section))
                    .collect(),
            )
        })
        .collect();
    answer
        .iter()
        .map(|(text, cited)| {
            let words: Vec<String> = terms(text);
            let (best, best_id) = chunk_terms
                .iter()
                .filter(|(c, _)| cited.as_ref().is_none_or(|id| *id == c.id))
                .map(|(c, set)| {
                    let found = words.iter().filter(|w| set.contains(*w)).count();
                    let share = if words.is_empty() {
                        0.0
                    } else {
                        found as f64 / words.len() as f64
                    };
                    (share, Some(c.id.clone()))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap_or((0.0, None));
            AnswerSentence {
                text: text.clone(),
                supported: !words.is_empty() && best >= threshold,
                chunk_id: cited.clone().or(best_id),
                support: best,
            }
        })
        .collect()
}

/// Splits generated text into sentences, reading citation markers like `[2]` (1-based, into `chunk_ids`).
pub fn split_cited(text: &str, chunk_ids: &[String]) -> Vec<(String, Option<String>)> {
    sentences(text)
        .into_iter()
        .map(|(s, e)| {
            let sent = &text[s..e];
            let mut cited = None;
            let mut clean = String::with_capacity(sent.len());
            let mut rest = sent;
            while let Some(open) = rest.find('[') {
                clean.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                match after.find(']') {
                    Some(close) if after[..close].trim().parse::<usize>().is_ok() => {
                        let n: usize = after[..close].trim().parse().expect("checked");
                        if cited.is_none() && n >= 1 && n <= chunk_ids.len() {
                            cited = Some(chunk_ids[n - 1].clone());
                        }
                        rest = &after[close + 1..];
                    }
                    _ => {
                        clean.push('[');
                        rest = after;
                    }
                }
            }
            clean.push_str(rest);
            (
                clean.split_whitespace().collect::<Vec<_>>().join(" "),
                cited,
            )
        })
        .filter(|(s, _)| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str, section: &str, text: &str) -> Chunk {
        Chunk {
            id: id.into(),
            document: "faq.rst.txt".into(),
            section: section.into(),
            section_path: section.into(),
            start: 0,
            end: text.len(),
            text: text.into(),
            tokens: 0,
            untrusted: None,
            quarantined: false,
        }
    }

    #[test]
    fn the_planted_unsupported_sentence_is_flagged() {
        let a = chunk(
            "faq#0",
            "How do I copy an object?",
            "Use copy.copy() for shallow copies and copy.deepcopy() for deep copies of objects. Dictionaries have a copy() method.",
        );
        let b = chunk(
            "faq#1",
            "Why is Python slow?",
            "The interpreter executes bytecode; extension modules written in C run faster.",
        );
        let answer = "Use copy.deepcopy() for deep copies of objects [1]. Dictionaries have a copy() method [1]. \
                      Python was first released on Mars in 1820 by a committee of penguins [2].";
        let ids = vec!["faq#0".to_string(), "faq#1".to_string()];
        let parts = split_cited(answer, &ids);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].1.as_deref(), Some("faq#0"));
        assert!(!parts[0].0.contains("[1]"));
        let checked = ground(&parts, &[&a, &b], 0.6);
        assert!(checked[0].supported && checked[1].supported, "{checked:?}");
        assert!(!checked[2].supported, "{:?}", checked[2]);
        // A true sentence citing the wrong chunk is not supported by that citation.
        let wrong = ground(
            &[(
                "Use copy.deepcopy() for deep copies.".into(),
                Some("faq#1".into()),
            )],
            &[&a, &b],
            0.6,
        );
        assert!(!wrong[0].supported);
    }

    #[test]
    fn extractive_answers_pick_the_sentences_that_match_and_cite_them() {
        let chunks = [
            chunk(
                "d#0",
                "How do I copy an object?",
                "In general, try copy.copy() or copy.deepcopy() for the general case. Not all objects can be copied. Some objects can be copied more easily.",
            ),
            chunk(
                "d#1",
                "How do I sort a list?",
                "Use the sort() method or the sorted() function.",
            ),
        ];
        let stats = TermStats::of(&chunks);
        let hits = [
            Retrieved {
                chunk: &chunks[0],
                score: 2.0,
            },
            Retrieved {
                chunk: &chunks[1],
                score: 0.5,
            },
        ];
        let s = extractive("How can I copy an object in Python?", &hits, &stats, 2);
        assert_eq!(s.len(), 2);
        assert!(s[0].text.contains("copy.deepcopy()"), "{s:?}");
        assert!(s.iter().all(|x| x.chunk_id.as_deref() == Some("d#0")));
        assert_eq!(terms("Copies copying the copied"), ["copy", "copy", "copi"]);
    }

    #[test]
    fn extractive_answers_read_as_prose_unless_code_is_asked_for() {
        // A man page: the prose sentence, an option list, a shell line, CRLF line ends.
        let text = "git-stash - Stash the changes in a dirty working directory away.\r\n\r\n\
                    -p, --patch  Interactively select hunks. -k, --keep-index  Keep the index intact.\r\n\r\n\
                    $ git stash push -m \"wip\" -- src/\r\n\r\n\
                    Use git stash when you want to record the current state of the working directory and go back to a clean one.";
        let chunks = [chunk("git-stash.txt#0", "DESCRIPTION", text)];
        let stats = TermStats::of(&chunks);
        let hits = [Retrieved {
            chunk: &chunks[0],
            score: 1.0,
        }];
        let s = extractive("What does git stash do?", &hits, &stats, 3);
        assert!(!s.is_empty());
        for a in &s {
            assert!(
                !a.text.contains("--patch") && !a.text.contains("$ git"),
                "{s:?}"
            );
            assert!(
                !a.text.contains('\r') && !a.text.contains('\n'),
                "{:?}",
                a.text
            );
        }
        assert!(
            s.iter().any(|a| a.text.starts_with("Use git stash when")),
            "{s:?}"
        );
        // Asked for the command, the shell line may answer.
        let s = extractive(
            "Show an example command for git stash with a message",
            &hits,
            &stats,
            4,
        );
        assert!(
            s.iter().any(|a| a.text.contains("$ git stash push")),
            "{s:?}"
        );
        assert_eq!(
            not_prose("-a, --all  Stage all files."),
            Some("an option list")
        );
        assert_eq!(
            not_prose("for (i = 0; i < n; i++) { x[i] = y[i]; }"),
            Some("code")
        );
        assert_eq!(not_prose("A keel keeps the ship upright."), None);
        assert_eq!(clean_sentence("a\r\nb\t c"), "a b c");
    }

    #[test]
    fn code_after_a_colon_fragments_and_repeats_stay_out_of_answers() {
        let chunks = [
            chunk(
                "faq#1",
                "How do I call a function named by a string?",
                "The best way is a dictionary that maps strings to functions. Use locals to resolve the name:\n     def my_func():\n         print(\"hello\")\n\n     f = locals()[name]",
            ),
            // The next chunk of the same section starts with the overlap: the cut-off tail of a sentence, then a
            // sentence the first chunk already holds.
            chunk(
                "faq#2",
                "How do I call a function named by a string?",
                "maps strings to functions. The best way is a dictionary that maps strings to functions. Strings need not match the function names.",
            ),
        ];
        let stats = TermStats::of(&chunks);
        let hits = [
            Retrieved {
                chunk: &chunks[0],
                score: 1.0,
            },
            Retrieved {
                chunk: &chunks[1],
                score: 0.9,
            },
        ];
        let s = extractive(
            "How do I call a function when I have its name as a string?",
            &hits,
            &stats,
            4,
        );
        let texts: Vec<&str> = s.iter().map(|a| a.text.as_str()).collect();
        assert!(
            texts
                .iter()
                .all(|t| !t.contains("def my_func") && !t.contains("print(")),
            "{texts:?}"
        );
        assert!(
            texts.iter().all(|t| !t.starts_with("maps strings")),
            "{texts:?}"
        );
        assert_eq!(
            texts
                .iter()
                .filter(|t| t.contains("dictionary that maps strings"))
                .count(),
            1,
            "{texts:?}"
        );
        assert!(
            texts.contains(&"Use locals to resolve the name:"),
            "{texts:?}"
        );
        // A plain-text document indented throughout is prose, not code.
        let indented = [chunk(
            "man#0",
            "DESCRIPTION",
            "    Stash records the state of the working directory.\n    It goes back to a clean tree.",
        )];
        let stats = TermStats::of(&indented);
        let hits = [Retrieved {
            chunk: &indented[0],
            score: 1.0,
        }];
        let s = extractive("What does stash record?", &hits, &stats, 2);
        assert!(
            s.iter()
                .any(|a| a.text.starts_with("Stash records the state")),
            "{s:?}"
        );
    }

    #[test]
    fn the_sentence_naming_the_subject_is_preferred_over_its_neighbours() {
        let chunks = [
            chunk(
                "d#0",
                "Merging",
                "Branches are lines of development. A fast-forward merge moves the branch pointer without a merge commit. Conflicts need manual resolution.",
            ),
            chunk(
                "d#1",
                "Other",
                "Branches and tags are refs. Branches move, tags do not.",
            ),
        ];
        let stats = TermStats::of(&chunks);
        let hits = [Retrieved {
            chunk: &chunks[0],
            score: 1.0,
        }];
        let s = extractive(
            "What is a fast-forward merge of branches?",
            &hits,
            &stats,
            1,
        );
        assert!(s[0].text.starts_with("A fast-forward merge"), "{s:?}");
    }
}
