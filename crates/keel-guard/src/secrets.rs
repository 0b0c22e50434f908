//! Secret detectors: well-known API-key formats (each a fixed prefix and length), private-key blocks, JWTs,
//! credentials assigned in text (`password = …`), and high-entropy tokens.

use crate::Finding;
use regex::Regex;
use std::sync::LazyLock;

struct Pattern {
    kind: &'static str,
    re: Regex,
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let p = |kind, re: &str| Pattern {
        kind,
        re: Regex::new(re).expect("secret pattern"),
    };
    vec![
        p(
            "private_key",
            r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
        ),
        p(
            "aws_access_key",
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",
        ),
        p(
            "github_token",
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,90})\b",
        ),
        p("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
        p(
            "openai_key",
            r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        ),
        p(
            "stripe_key",
            r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b",
        ),
        p(
            "slack_token",
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b|https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}",
        ),
        p("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
        p("keel_api_key", r"\bkeel_[A-Za-z0-9]{12}_[A-Za-z0-9]{40}\b"),
        p(
            "jwt",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        ),
        p(
            "credential",
            r#"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)\s*[:=]\s*["']?([^\s"']{8,})"#,
        ),
    ]
});

static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/=_\-]{24,}").expect("token"));

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Every secret in `text` (byte offsets).
pub fn detect(text: &str) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    for p in PATTERNS.iter() {
        for c in p.re.captures_iter(text) {
            // For an assignment, the secret is the value, not the word "password".
            let m = c.get(1).unwrap_or_else(|| c.get(0).expect("match"));
            if !found.iter().any(|f| f.start < m.end() && m.start() < f.end) {
                found.push(Finding {
                    kind: p.kind,
                    start: m.start(),
                    end: m.end(),
                    score: 1.0,
                    reason: format!("{} format", p.kind.replace('_', " ")),
                });
            }
        }
    }
    for m in TOKEN.find_iter(text) {
        let s = m.as_str();
        let classes = [
            s.bytes().any(|b| b.is_ascii_lowercase()),
            s.bytes().any(|b| b.is_ascii_uppercase()),
            s.bytes().any(|b| b.is_ascii_digit()),
        ]
        .iter()
        .filter(|&&x| x)
        .count();
        let h = entropy(s);
        // Random base64/hex of 24+ characters sits above 4 bits per character; words and ids below.
        if classes >= 3 && h >= 4.0 && !found.iter().any(|f| f.start < m.end() && m.start() < f.end)
        {
            found.push(Finding {
                kind: "high_entropy",
                start: m.start(),
                end: m.end(),
                score: ((h - 4.0) / 2.0 + 0.5).min(1.0) as f32,
                reason: format!("random-looking token ({h:.1} bits per character)"),
            });
        }
    }
    found.sort_by_key(|f| f.start);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(t: &str) -> Vec<&'static str> {
        detect(t).into_iter().map(|f| f.kind).collect()
    }

    #[test]
    fn known_formats_and_entropy() {
        assert_eq!(
            kinds("key AKIAIOSFODNN7EXAMPLE here"),
            vec!["aws_access_key"]
        );
        assert_eq!(
            kinds("token ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"),
            vec!["github_token"]
        );
        assert_eq!(
            kinds("export OPENAI_API_KEY=sk-proj-Abc123Def456Ghi789Jkl012"),
            vec!["openai_key"]
        );
        assert_eq!(
            kinds("-----BEGIN RSA PRIVATE KEY-----\nMIIE"),
            vec!["private_key"]
        );
        assert_eq!(kinds("password: hunter2hunter2"), vec!["credential"]);
        let f = detect("password: hunter2hunter2");
        assert_eq!(
            &"password: hunter2hunter2"[f[0].start..f[0].end],
            "hunter2hunter2"
        );
        assert_eq!(
            kinds("blob Zx8q2LmP0rT5vW9yB3nD6fH1jK4s"),
            vec!["high_entropy"]
        );
        assert!(kinds("the internationalization_and_localization module").is_empty());
        assert!(kinds("see https://example.com/docs/getting-started for details").is_empty());
    }
}
