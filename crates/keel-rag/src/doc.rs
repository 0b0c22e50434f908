//! Documents → structural blocks (headings, paragraphs, code, list items) with byte offsets into the source.
//!
//! Markdown (ATX and setext headings, fenced and indented code), reStructuredText (over- and underlined titles
//! with levels in order of first appearance, `::` literal blocks and code directives, roles reduced to their
//! text), HTML (headings, `pre`, block elements; scripts and styles dropped; entities decoded) and plain text
//! (paragraphs). Bad input is refused with a reason: binary content, text that is not UTF-8, empty files.

use serde::Serialize;

/// What a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Markdown,
    Rst,
    Html,
    Text,
}

impl Format {
    /// The format a path's name implies (`.rst.txt` is reST), or `None` for names Keel does not ingest.
    pub fn of_path(path: &str) -> Option<Format> {
        let p = path.to_ascii_lowercase();
        if p.ends_with(".rst.txt") || p.ends_with(".rst") || p.ends_with(".rest") {
            Some(Format::Rst)
        } else if p.ends_with(".md") || p.ends_with(".markdown") || p.ends_with(".mdx") {
            Some(Format::Markdown)
        } else if p.ends_with(".html") || p.ends_with(".htm") || p.ends_with(".xhtml") {
            Some(Format::Html)
        } else if p.ends_with(".txt") || p.ends_with(".text") {
            Some(Format::Text)
        } else {
            None
        }
    }
}

/// The kind of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// A section title; `level` 1 is the outermost.
    Heading {
        level: u8,
    },
    Paragraph,
    Code,
    ListItem,
}

/// One block of a document, its text cleaned of markup, with its byte range in the source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    pub kind: BlockKind,
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// Why a file is not ingested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("binary content (a NUL byte at offset {0})")]
    Binary(usize),
    #[error("not UTF-8 text (invalid byte sequence at offset {0})")]
    NotUtf8(usize),
    #[error("empty (no text)")]
    Empty,
    #[error("too large ({size} bytes; the limit is {limit})")]
    TooLarge { size: usize, limit: usize },
    #[error("unsupported file type (ingest .md, .rst, .rst.txt, .txt, .html)")]
    Unsupported,
}

/// Checks raw bytes and returns them as text.
pub fn text_of(bytes: &[u8], limit: usize) -> Result<&str, Refusal> {
    if bytes.len() > limit {
        return Err(Refusal::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    if let Some(i) = bytes.iter().take(1 << 16).position(|&b| b == 0) {
        return Err(Refusal::Binary(i));
    }
    let s = std::str::from_utf8(bytes).map_err(|e| Refusal::NotUtf8(e.valid_up_to()))?;
    if s.trim().is_empty() {
        return Err(Refusal::Empty);
    }
    Ok(s)
}

/// Parses a document into blocks.
pub fn parse(text: &str, format: Format) -> Vec<Block> {
    let blocks = match format {
        Format::Markdown => markdown(text),
        Format::Rst => rst(text),
        Format::Html => html(text),
        Format::Text => plain(text),
    };
    blocks
        .into_iter()
        .filter(|b| !b.text.trim().is_empty())
        .collect()
}

/// Lines with their byte offsets (without the newline).
fn lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut at = 0;
    for l in text.split_inclusive('\n') {
        let body = l.strip_suffix('\n').unwrap_or(l);
        let body = body.strip_suffix('\r').unwrap_or(body);
        out.push((at, body));
        at += l.len();
    }
    out
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn plain(text: &str) -> Vec<Block> {
    let ls = lines(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < ls.len() {
        if ls[i].1.trim().is_empty() {
            i += 1;
            continue;
        }
        let start = ls[i].0;
        let mut j = i;
        while j < ls.len() && !ls[j].1.trim().is_empty() {
            j += 1;
        }
        let end = ls[j - 1].0 + ls[j - 1].1.len();
        out.push(Block {
            kind: BlockKind::Paragraph,
            text: collapse(&text[start..end]),
            start,
            end,
        });
        i = j;
    }
    out
}

/// Markdown inline markup reduced to text: links `[t](u)` → t, images dropped, emphasis and code ticks removed.
fn md_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'!' if b.get(i + 1) == Some(&b'[') => {
                // Image: keep the alt text.
                i += 1;
            }
            b'[' => {
                if let Some(close) = s[i..].find("](").map(|c| c + i)
                    && let Some(end) = s[close..].find(')').map(|e| e + close)
                {
                    out.push_str(&s[i + 1..close]);
                    i = end + 1;
                    continue;
                }
                out.push('[');
                i += 1;
            }
            b'*' | b'_' | b'`' => i += 1,
            _ => {
                let ch = s[i..].chars().next().expect("in bounds");
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    collapse(&out)
}

fn markdown(text: &str) -> Vec<Block> {
    let ls = lines(text);
    let mut out = Vec::new();
    let mut i = 0;
    let end_of = |k: usize| ls[k].0 + ls[k].1.len();
    while i < ls.len() {
        let (at, line) = ls[i];
        let t = line.trim_start();
        if t.is_empty() {
            i += 1;
            continue;
        }
        // Fenced code.
        if t.starts_with("```") || t.starts_with("~~~") {
            let fence = &t[..3];
            let mut j = i + 1;
            while j < ls.len() && !ls[j].1.trim_start().starts_with(fence) {
                j += 1;
            }
            let body_start = ls.get(i + 1).map_or(end_of(i), |l| l.0);
            let body_end = if j > i + 1 { end_of(j - 1) } else { body_start };
            out.push(Block {
                kind: BlockKind::Code,
                text: text[body_start..body_end.max(body_start)].to_string(),
                start: at,
                end: if j < ls.len() {
                    end_of(j)
                } else {
                    end_of(ls.len() - 1)
                },
            });
            i = j + 1;
            continue;
        }
        // ATX heading.
        let hashes = t.bytes().take_while(|&c| c == b'#').count();
        if (1..=6).contains(&hashes) && t[hashes..].starts_with([' ', '\t']) {
            out.push(Block {
                kind: BlockKind::Heading {
                    level: hashes as u8,
                },
                text: md_inline(t[hashes..].trim().trim_end_matches('#')),
                start: at,
                end: end_of(i),
            });
            i += 1;
            continue;
        }
        // Indented code (4 spaces or a tab) after a blank line.
        if (line.starts_with("    ") || line.starts_with('\t'))
            && (i == 0 || ls[i - 1].1.trim().is_empty())
        {
            let mut j = i;
            while j < ls.len()
                && (ls[j].1.starts_with("    ")
                    || ls[j].1.starts_with('\t')
                    || ls[j].1.trim().is_empty())
            {
                j += 1;
            }
            while j > i && ls[j - 1].1.trim().is_empty() {
                j -= 1;
            }
            out.push(Block {
                kind: BlockKind::Code,
                text: text[at..end_of(j - 1)].to_string(),
                start: at,
                end: end_of(j - 1),
            });
            i = j;
            continue;
        }
        // List item.
        let is_item = |l: &str| {
            let t = l.trim_start();
            t.starts_with("- ")
                || t.starts_with("* ")
                || t.starts_with("+ ")
                || t.split_once(". ")
                    .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
        };
        if is_item(line) {
            let mut j = i + 1;
            while j < ls.len() && !ls[j].1.trim().is_empty() && !is_item(ls[j].1) {
                j += 1;
            }
            let body = text[at..end_of(j - 1)].trim_start();
            let body = body.split_once(' ').map_or(body, |(_, rest)| rest);
            out.push(Block {
                kind: BlockKind::ListItem,
                text: md_inline(body),
                start: at,
                end: end_of(j - 1),
            });
            i = j;
            continue;
        }
        // Paragraph, possibly a setext heading.
        let mut j = i + 1;
        while j < ls.len() {
            let n = ls[j].1.trim();
            if n.is_empty() || n.starts_with('#') || n.starts_with("```") || is_item(ls[j].1) {
                break;
            }
            if !n.is_empty()
                && (n.bytes().all(|c| c == b'=') || n.bytes().all(|c| c == b'-'))
                && n.len() >= 2
            {
                break;
            }
            j += 1;
        }
        if j < ls.len() {
            let n = ls[j].1.trim();
            let setext =
                n.len() >= 2 && (n.bytes().all(|c| c == b'=') || n.bytes().all(|c| c == b'-'));
            if setext {
                out.push(Block {
                    kind: BlockKind::Heading {
                        level: if n.starts_with('=') { 1 } else { 2 },
                    },
                    text: md_inline(&text[at..end_of(j - 1)]),
                    start: at,
                    end: end_of(j),
                });
                i = j + 1;
                continue;
            }
        }
        out.push(Block {
            kind: BlockKind::Paragraph,
            text: md_inline(&text[at..end_of(j - 1)]),
            start: at,
            end: end_of(j - 1),
        });
        i = j;
    }
    out
}

/// reST inline markup reduced to text: `:role:`text <target>`` → text, ``literal`` → literal, `` `t <u>`_ `` → t.
fn rst_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(tick) = rest.find('`') {
        let (before, after) = rest.split_at(tick);
        // A role prefix `:name:` right before the backtick is dropped.
        let before = match before.rfind(':') {
            Some(end) if end + 1 == before.len() => match before[..end].rfind(':') {
                Some(start)
                    if before[start + 1..end].bytes().all(|c| {
                        c.is_ascii_alphanumeric() || c == b':' || c == b'-' || c == b'_'
                    }) && !before[start + 1..end].is_empty() =>
                {
                    &before[..start]
                }
                _ => before,
            },
            _ => before,
        };
        out.push_str(&strip_emphasis(before));
        let double = after.starts_with("``");
        let open = if double { 2 } else { 1 };
        let close_pat = if double { "``" } else { "`" };
        match after[open..].find(close_pat) {
            Some(c) => {
                let inner = &after[open..open + c];
                // `text <target>` → text
                let shown = match (inner.rfind('<'), inner.ends_with('>')) {
                    (Some(lt), true) if lt > 0 => inner[..lt].trim_end(),
                    _ => inner,
                };
                out.push_str(shown.trim_start_matches('~').trim_start_matches('!'));
                let mut next = &after[open + c + close_pat.len()..];
                next = next
                    .strip_prefix("__")
                    .or_else(|| next.strip_prefix('_'))
                    .unwrap_or(next);
                rest = next;
            }
            None => {
                out.push_str(&strip_emphasis(after));
                rest = "";
            }
        }
    }
    out.push_str(&strip_emphasis(rest));
    collapse(&out.replace("\\ ", ""))
}

/// Removes `*`/`**` emphasis markers (outside literals): a star that opens (after a boundary, before text) or
/// closes (after text, before a boundary). A star with space on both sides (`2 * 3`) is text.
fn strip_emphasis(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '*' {
            let prev = if i == 0 { ' ' } else { chars[i - 1] };
            let next = chars.get(i + 1).copied().unwrap_or(' ');
            let boundary = |x: char| x.is_whitespace() || "([{'\"-/:.,;!?)]}*".contains(x);
            let opens = boundary(prev) && !next.is_whitespace();
            let closes = !prev.is_whitespace() && boundary(next);
            if opens || closes {
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn is_adornment(l: &str) -> Option<u8> {
    let t = l.trim_end();
    let first = *t.as_bytes().first()?;
    (t.len() >= 3 && b"=-~^\"#*+'`:._".contains(&first) && t.bytes().all(|c| c == first))
        .then_some(first)
}

fn rst(text: &str) -> Vec<Block> {
    let ls = lines(text);
    let end_of = |k: usize| ls[k].0 + ls[k].1.len();
    let mut styles: Vec<(u8, bool)> = Vec::new();
    let mut level_of = |c: u8, over: bool| -> u8 {
        let pos = styles
            .iter()
            .position(|s| *s == (c, over))
            .unwrap_or_else(|| {
                styles.push((c, over));
                styles.len() - 1
            });
        (pos + 1).min(255) as u8
    };
    let mut out = Vec::new();
    let mut i = 0;
    let mut literal_next = false;
    while i < ls.len() {
        let (at, line) = ls[i];
        if line.trim().is_empty() {
            i += 1;
            continue;
        }
        // Over- and underlined title.
        if let Some(c) = is_adornment(line)
            && i + 2 < ls.len()
            && is_adornment(ls[i + 2].1) == Some(c)
            && !ls[i + 1].1.trim().is_empty()
        {
            out.push(Block {
                kind: BlockKind::Heading {
                    level: level_of(c, true),
                },
                text: rst_inline(ls[i + 1].1.trim()),
                start: at,
                end: end_of(i + 2),
            });
            i += 3;
            continue;
        }
        // Underlined title.
        if !line.starts_with([' ', '\t'])
            && i + 1 < ls.len()
            && let Some(c) = is_adornment(ls[i + 1].1)
            && ls[i + 1].1.trim_end().len() >= line.trim_end().chars().count().min(3)
            && is_adornment(line).is_none()
        {
            out.push(Block {
                kind: BlockKind::Heading {
                    level: level_of(c, false),
                },
                text: rst_inline(line.trim()),
                start: at,
                end: end_of(i + 1),
            });
            i += 2;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        // Directives and comments: code directives keep their body as code; others keep their body as text.
        if line.trim_start().starts_with("..") {
            let head = line.trim_start();
            let code = head.contains("code-block::")
                || head.contains("code::")
                || head.contains("doctest::");
            let mut j = i + 1;
            while j < ls.len()
                && (ls[j].1.trim().is_empty()
                    || ls[j].1.len() - ls[j].1.trim_start().len() > indent)
            {
                j += 1;
            }
            while j > i + 1 && ls[j - 1].1.trim().is_empty() {
                j -= 1;
            }
            if code && j > i + 1 {
                let s = ls[i + 1].0;
                out.push(Block {
                    kind: BlockKind::Code,
                    text: text[s..end_of(j - 1)].trim_matches('\n').to_string(),
                    start: at,
                    end: end_of(j - 1),
                });
                i = j;
            } else if head.starts_with(".. note::")
                || head.starts_with(".. warning::")
                || head.starts_with(".. versionadded::")
                || head.starts_with(".. versionchanged::")
                || head.starts_with(".. deprecated::")
                || head.starts_with(".. seealso::")
                || head.starts_with(".. tip::")
                || head.starts_with(".. important::")
                || head.starts_with(".. impl-detail::")
            {
                // Admonitions: their body is prose; parse it in place.
                i += 1;
            } else {
                // Comments, targets, tables of contents and other directives carry no prose.
                i = j.max(i + 1);
            }
            continue;
        }
        // Literal block after a paragraph ending in `::`.
        if literal_next && indent > 0 {
            let mut j = i;
            while j < ls.len()
                && (ls[j].1.trim().is_empty()
                    || ls[j].1.len() - ls[j].1.trim_start().len() >= indent)
            {
                j += 1;
            }
            while j > i && ls[j - 1].1.trim().is_empty() {
                j -= 1;
            }
            out.push(Block {
                kind: BlockKind::Code,
                text: text[at..end_of(j - 1)].to_string(),
                start: at,
                end: end_of(j - 1),
            });
            literal_next = false;
            i = j;
            continue;
        }
        literal_next = false;
        let t = line.trim_start();
        let item = t.starts_with("* ")
            || t.starts_with("- ")
            || t.starts_with("#. ")
            || t.split_once(". ").is_some_and(|(n, _)| {
                !n.is_empty() && n.len() < 4 && n.bytes().all(|c| c.is_ascii_digit())
            });
        // A paragraph (or list item): lines until a blank line, a change of indentation or a new item.
        let mut j = i + 1;
        while j < ls.len() {
            let n = ls[j].1;
            if n.trim().is_empty() {
                break;
            }
            let nt = n.trim_start();
            if item && (nt.starts_with("* ") || nt.starts_with("- ") || nt.starts_with("#. ")) {
                break;
            }
            if j + 1 < ls.len() && is_adornment(ls[j + 1].1).is_some() && !n.starts_with(' ') {
                break;
            }
            j += 1;
        }
        let raw = &text[at..end_of(j - 1)];
        let mut body = raw.trim_start();
        if item {
            body = body.split_once(' ').map_or(body, |(_, r)| r);
        }
        let ends_literal = raw.trim_end().ends_with("::");
        let mut cleaned = rst_inline(body);
        if ends_literal {
            // "Example::" → "Example:", a lone "::" vanishes.
            cleaned = cleaned.trim_end_matches(':').to_string();
            if !cleaned.is_empty() {
                cleaned.push(':');
            }
            literal_next = true;
        }
        out.push(Block {
            kind: if item {
                BlockKind::ListItem
            } else {
                BlockKind::Paragraph
            },
            text: cleaned,
            start: at,
            end: end_of(j - 1),
        });
        i = j;
    }
    out
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let semi = after[..after.len().min(12)].find(';');
        let decoded = semi.and_then(|e| {
            let name = &after[1..e];
            let ch = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                n if n.starts_with("#x") || n.starts_with("#X") => u32::from_str_radix(&n[2..], 16)
                    .ok()
                    .and_then(char::from_u32),
                n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            }?;
            Some((ch, e + 1))
        });
        match decoded {
            Some((ch, len)) => {
                out.push(ch);
                rest = &after[len..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn html(text: &str) -> Vec<Block> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    // Current block: kind, start offset, collected text.
    let mut cur: Option<(BlockKind, usize, String)> = None;
    let mut i = 0;
    let b = text.as_bytes();
    let mut in_pre = false;
    let flush = |cur: &mut Option<(BlockKind, usize, String)>, end: usize, out: &mut Vec<Block>| {
        if let Some((kind, start, t)) = cur.take() {
            let t = if kind == BlockKind::Code {
                decode_entities(&t)
            } else {
                collapse(&decode_entities(&t))
            };
            out.push(Block {
                kind,
                text: t,
                start,
                end,
            });
        }
    };
    while i < b.len() {
        if b[i] == b'<' {
            let close = match text[i..].find('>') {
                Some(c) => i + c,
                None => break,
            };
            let tag = &lower[i + 1..close];
            if tag.starts_with("!--") {
                i = lower[i..].find("-->").map_or(b.len(), |e| i + e + 3);
                continue;
            }
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let closing = tag.starts_with('/');
            if !closing && (name == "script" || name == "style" || name == "head" || name == "nav")
            {
                let end_tag = format!("</{name}");
                i = lower[close..]
                    .find(&end_tag)
                    .and_then(|e| lower[close + e..].find('>').map(|g| close + e + g + 1))
                    .unwrap_or(b.len());
                continue;
            }
            let heading = name.len() == 2
                && name.starts_with('h')
                && (b'1'..=b'6').contains(&name.as_bytes()[1]);
            let block = heading
                || matches!(
                    name.as_str(),
                    "p" | "div"
                        | "li"
                        | "pre"
                        | "section"
                        | "article"
                        | "blockquote"
                        | "dt"
                        | "dd"
                        | "table"
                        | "tr"
                        | "br"
                        | "ul"
                        | "ol"
                        | "main"
                        | "body"
                        | "header"
                        | "footer"
                        | "td"
                        | "th"
                );
            if block && !(in_pre && name != "pre") {
                if closing || name != "br" {
                    flush(&mut cur, i, &mut out);
                }
                if !closing {
                    let kind = if heading {
                        Some(BlockKind::Heading {
                            level: name.as_bytes()[1] - b'0',
                        })
                    } else if name == "pre" {
                        in_pre = true;
                        Some(BlockKind::Code)
                    } else if name == "li" {
                        Some(BlockKind::ListItem)
                    } else {
                        None
                    };
                    if let Some(k) = kind {
                        cur = Some((k, i, String::new()));
                    }
                } else if name == "pre" {
                    in_pre = false;
                }
            }
            i = close + 1;
            continue;
        }
        let next = text[i..].find('<').map_or(b.len(), |n| i + n);
        let chunk = &text[i..next];
        match &mut cur {
            Some((_, _, t)) => t.push_str(chunk),
            None if !chunk.trim().is_empty() => {
                cur = Some((BlockKind::Paragraph, i, chunk.to_string()));
            }
            None => {}
        }
        i = next;
    }
    flush(&mut cur, b.len(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(b: &[Block]) -> Vec<(BlockKind, &str)> {
        b.iter().map(|b| (b.kind, b.text.as_str())).collect()
    }

    #[test]
    fn rst_titles_paragraphs_literals_and_roles() {
        let src = "===\nFAQ\n===\n\n.. contents::\n\nGeneral\n=======\n\nHow do I copy?\n--------------\n\nUse :func:`copy.copy` or the :mod:`copy module <copy>`, see ``deepcopy``::\n\n   import copy\n   x = copy.copy(y)\n\n* one item\n* two\n";
        let b = parse(src, Format::Rst);
        assert_eq!(
            kinds(&b),
            [
                (BlockKind::Heading { level: 1 }, "FAQ"),
                (BlockKind::Heading { level: 2 }, "General"),
                (BlockKind::Heading { level: 3 }, "How do I copy?"),
                (
                    BlockKind::Paragraph,
                    "Use copy.copy or the copy module, see deepcopy:"
                ),
                (BlockKind::Code, "   import copy\n   x = copy.copy(y)"),
                (BlockKind::ListItem, "one item"),
                (BlockKind::ListItem, "two"),
            ]
        );
        // Offsets point into the source.
        assert!(src[b[2].start..b[2].end].starts_with("How do I copy?"));
        // Stars inside literals are text; emphasis markers outside them are not; `2 * 3` keeps its star.
        assert_eq!(
            rst_inline("Is a ``*.pyd`` file *really* a DLL, 2 * 3?"),
            "Is a *.pyd file really a DLL, 2 * 3?"
        );
        assert!(src[b[4].start..b[4].end].contains("x = copy.copy(y)"));
    }

    #[test]
    fn markdown_headings_code_lists_and_links() {
        let src = "# Title\n\nSome [link](http://x) and *emphasis*.\n\n```rust\nfn main() {}\n```\n\nSub\n---\n\n- item one\n- item two\n\n## Deeper ##\ntext\n";
        let b = parse(src, Format::Markdown);
        assert_eq!(
            kinds(&b),
            [
                (BlockKind::Heading { level: 1 }, "Title"),
                (BlockKind::Paragraph, "Some link and emphasis."),
                (BlockKind::Code, "fn main() {}"),
                (BlockKind::Heading { level: 2 }, "Sub"),
                (BlockKind::ListItem, "item one"),
                (BlockKind::ListItem, "item two"),
                (BlockKind::Heading { level: 2 }, "Deeper"),
                (BlockKind::Paragraph, "text"),
            ]
        );
    }

    #[test]
    fn html_blocks_entities_and_dropped_scripts() {
        let src = "<html><head><title>x</title></head><body><h1>Intro &amp; more</h1><script>var a = '<p>';</script><p>Hello <b>bold</b>&nbsp;world &#x263A;</p><pre>a &lt; b\n  c</pre><ul><li>first</li></ul></body></html>";
        let b = parse(src, Format::Html);
        assert_eq!(
            kinds(&b),
            [
                (BlockKind::Heading { level: 1 }, "Intro & more"),
                (BlockKind::Paragraph, "Hello bold world \u{263A}"),
                (BlockKind::Code, "a < b\n  c"),
                (BlockKind::ListItem, "first"),
            ]
        );
    }

    #[test]
    fn bad_bytes_are_refused_with_a_reason() {
        assert_eq!(text_of(b"abc\0def", 100), Err(Refusal::Binary(3)));
        assert_eq!(text_of(b"ok \xff\xfe", 100), Err(Refusal::NotUtf8(3)));
        assert_eq!(text_of(b"  \n\t ", 100), Err(Refusal::Empty));
        assert_eq!(
            text_of(&[b'a'; 101], 100),
            Err(Refusal::TooLarge {
                size: 101,
                limit: 100
            })
        );
        assert_eq!(
            Format::of_path("faq/programming.rst.txt"),
            Some(Format::Rst)
        );
        assert_eq!(Format::of_path("logo.png"), None);
    }
}
