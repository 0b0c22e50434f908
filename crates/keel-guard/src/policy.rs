//! Policies: what to do with each detector's findings (allow, flag, redact, block), with thresholds, and
//! the redaction itself (replace by a type tag, or by a salted hash that still joins equal values).

use crate::{Finding, Report};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Flag,
    Redact,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

/// One detector's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorPolicy {
    pub action: Action,
    /// Score above which a finding counts (injection: replaces the calibrated threshold).
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Only these finding types (PII/secret type names); all when absent.
    #[serde(default)]
    pub types: Option<Vec<String>>,
    /// Injection only: scores above this and not above the threshold pass, marked for review (the decision
    /// says `review`, the action is at least flag). Default: the model's review threshold (encoder guards);
    /// set it above the threshold to turn the band off.
    #[serde(default)]
    pub review: Option<f32>,
}

impl DetectorPolicy {
    fn new(action: Action) -> Self {
        DetectorPolicy {
            action,
            threshold: None,
            types: None,
            review: None,
        }
    }
    fn applies(&self, f: &Finding) -> bool {
        self.threshold.is_none_or(|t| f.score >= t)
            && self
                .types
                .as_ref()
                .is_none_or(|ts| ts.iter().any(|t| t == f.kind))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Redaction {
    /// `[EMAIL]`
    #[default]
    Replace,
    /// `[EMAIL:3f2a9c1e]`: the same value always gets the same tag.
    Hash,
}

/// A policy for one route or collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub injection: DetectorPolicy,
    pub pii: DetectorPolicy,
    pub secrets: DetectorPolicy,
    pub leak: DetectorPolicy,
    pub redaction: Redaction,
    /// Salt for hashed redaction.
    pub salt: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            injection: DetectorPolicy::new(Action::Block),
            pii: DetectorPolicy::new(Action::Redact),
            secrets: DetectorPolicy::new(Action::Redact),
            leak: DetectorPolicy::new(Action::Block),
            redaction: Redaction::Replace,
            salt: String::new(),
        }
    }
}

/// A route's changes to the default policy: only the fields it names replace the default's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyOverride {
    pub injection: Option<DetectorPolicy>,
    pub pii: Option<DetectorPolicy>,
    pub secrets: Option<DetectorPolicy>,
    pub leak: Option<DetectorPolicy>,
    pub redaction: Option<Redaction>,
    pub salt: Option<String>,
}

impl Policy {
    /// This policy with `o`'s fields in place of its own.
    pub fn with(&self, o: &PolicyOverride) -> Policy {
        Policy {
            injection: o
                .injection
                .clone()
                .unwrap_or_else(|| self.injection.clone()),
            pii: o.pii.clone().unwrap_or_else(|| self.pii.clone()),
            secrets: o.secrets.clone().unwrap_or_else(|| self.secrets.clone()),
            leak: o.leak.clone().unwrap_or_else(|| self.leak.clone()),
            redaction: o.redaction.unwrap_or(self.redaction),
            salt: o.salt.clone().unwrap_or_else(|| self.salt.clone()),
        }
    }
}

/// What a policy decided for one text.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The strongest action taken.
    pub action: Action,
    pub blocked: bool,
    /// The injection score fell in the review band: passed, but worth a person's look.
    pub review: bool,
    /// `detector: reason` for every finding that triggered an action other than allow.
    pub reasons: Vec<String>,
    /// The text with redactions applied (equal to the input when nothing was redacted).
    pub text: String,
    /// Counts per detector of findings that triggered an action.
    pub counts: Vec<(&'static str, usize)>,
    /// The detectors whose action is block (what a caller may be told; reasons carry scores and thresholds
    /// an attacker could tune against).
    pub blocked_by: Vec<&'static str>,
}

impl Policy {
    pub fn decide(&self, text: &str, report: &Report) -> Decision {
        let mut action = Action::Allow;
        let mut reasons = Vec::new();
        let mut counts = Vec::new();
        let mut blocked_by = Vec::new();
        let mut redact: Vec<&Finding> = Vec::new();
        let mut review = false;
        if let Some(inj) = &report.injection {
            let t = self.injection.threshold.unwrap_or(inj.threshold);
            let r = self.injection.review.or(inj.review_threshold);
            if inj.score <= t
                && r.is_some_and(|r| inj.score > r)
                && self.injection.action != Action::Allow
            {
                review = true;
                action = action.max(Action::Flag);
                reasons.push(format!(
                    "injection: review band, score {:.3} > {:.3} (threshold {t:.3})",
                    inj.score,
                    r.unwrap_or_default()
                ));
            }
            if inj.score > t && self.injection.action != Action::Allow {
                action = action.max(self.injection.action.min(Action::Block));
                reasons.push(format!(
                    "injection: score {:.3} > {t:.3} ({})",
                    inj.score,
                    inj.reasons.join("; ")
                ));
                counts.push(("injection", 1));
                if self.injection.action >= Action::Block {
                    blocked_by.push("injection");
                }
            }
        }
        for (name, p, fs) in [
            ("pii", &self.pii, &report.pii),
            ("secrets", &self.secrets, &report.secrets),
            ("leak", &self.leak, &report.leaks),
        ] {
            let hits: Vec<&Finding> = fs.iter().filter(|f| p.applies(f)).collect();
            if hits.is_empty() || p.action == Action::Allow {
                continue;
            }
            action = action.max(p.action);
            counts.push((name, hits.len()));
            if p.action >= Action::Block {
                blocked_by.push(name);
            }
            for f in &hits {
                reasons.push(format!("{name}: {} ({})", f.kind, f.reason));
            }
            if p.action >= Action::Redact {
                redact.extend(hits);
            }
        }
        let text = if redact.is_empty() {
            text.to_string()
        } else {
            self.redact(text, &redact)
        };
        Decision {
            action,
            blocked: action == Action::Block,
            review,
            reasons,
            text,
            counts,
            blocked_by,
        }
    }

    /// Replaces every finding's span (overlaps merged, the earliest wins).
    pub fn redact(&self, text: &str, findings: &[&Finding]) -> String {
        let mut fs: Vec<&&Finding> = findings.iter().collect();
        fs.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in fs {
            if f.start < at
                || f.end > text.len()
                || !text.is_char_boundary(f.start)
                || !text.is_char_boundary(f.end)
            {
                continue;
            }
            out.push_str(&text[at..f.start]);
            out.push_str(&self.tag(f.kind, &text[f.start..f.end]));
            at = f.end;
        }
        out.push_str(&text[at..]);
        out
    }

    fn tag(&self, kind: &str, value: &str) -> String {
        let upper = kind.to_uppercase();
        match self.redaction {
            Redaction::Replace => format!("[{upper}]"),
            Redaction::Hash => {
                let h = Sha256::new()
                    .chain_update(self.salt.as_bytes())
                    .chain_update(value.as_bytes())
                    .finalize();
                format!("[{upper}:{}]", &hex::encode(h)[..8])
            }
        }
    }
}

/// What ingest does with a document chunk the injection detector flags (indirect injection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IngestAction {
    /// Index it, marked untrusted: citations carry the reason and generators get it fenced as data.
    #[default]
    Flag,
    /// Keep it in the chunk list, marked untrusted, but filter it out of every search: never retrieved.
    Quarantine,
    /// Drop it.
    Exclude,
    /// Ignore the detector.
    Allow,
}

/// A collection's ingest policy (`[serve.guard.collections.NAME]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestPolicy {
    pub injection: IngestAction,
    /// Replaces the calibrated threshold.
    pub threshold: Option<f32>,
}

impl Default for IngestPolicy {
    fn default() -> Self {
        IngestPolicy {
            injection: IngestAction::Flag,
            threshold: None,
        }
    }
}

/// The text with every PII and secret finding replaced, whatever the policy: what logs may hold.
pub fn redacted_for_log(text: &str, report: &Report) -> String {
    let all: Vec<&Finding> = report
        .pii
        .iter()
        .chain(&report.secrets)
        .chain(&report.leaks)
        .collect();
    Policy::default().redact(text, &all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InjectionVerdict;

    fn f(kind: &'static str, start: usize, end: usize) -> Finding {
        Finding {
            kind,
            start,
            end,
            score: 1.0,
            reason: String::new(),
        }
    }

    #[test]
    fn decides_and_redacts() {
        let text = "mail bob@example.com or call +1 555 123 4567";
        let report = Report {
            pii: vec![f("email", 5, 20), f("phone", 29, 44)],
            ..Default::default()
        };
        let d = Policy::default().decide(text, &report);
        assert_eq!(d.action, Action::Redact);
        assert!(!d.blocked);
        assert_eq!(d.text, "mail [EMAIL] or call [PHONE]");
        let hashed = Policy {
            redaction: Redaction::Hash,
            ..Default::default()
        }
        .decide(text, &report);
        assert!(
            hashed.text.starts_with("mail [EMAIL:") && hashed.text.len() > d.text.len(),
            "{}",
            hashed.text
        );
        let only_phone = Policy {
            pii: DetectorPolicy {
                action: Action::Redact,
                threshold: None,
                types: Some(vec!["phone".into()]),
                review: None,
            },
            ..Default::default()
        };
        assert_eq!(
            only_phone.decide(text, &report).text,
            "mail bob@example.com or call [PHONE]"
        );
        let inj = Report {
            injection: Some(InjectionVerdict {
                score: 0.9,
                flagged: true,
                threshold: 0.5,
                reasons: vec![],
                path: "ngram",
                review_threshold: None,
            }),
            ..Default::default()
        };
        assert!(Policy::default().decide("x", &inj).blocked);
        let lenient = Policy {
            injection: DetectorPolicy {
                action: Action::Block,
                threshold: Some(0.95),
                types: None,
                review: None,
            },
            ..Default::default()
        };
        assert!(!lenient.decide("x", &inj).blocked);
        let flag = Policy {
            injection: DetectorPolicy::new(Action::Flag),
            ..Default::default()
        };
        assert_eq!(flag.decide("x", &inj).action, Action::Flag);
        // The review band: above the review threshold, not above the block threshold.
        let band = |score: f32, review: Option<f32>| {
            let r = Report {
                injection: Some(InjectionVerdict {
                    score,
                    flagged: false,
                    threshold: 0.8,
                    reasons: vec![],
                    path: "encoder",
                    review_threshold: Some(0.4),
                }),
                ..Default::default()
            };
            let p = Policy {
                injection: DetectorPolicy {
                    review,
                    ..DetectorPolicy::new(Action::Block)
                },
                ..Default::default()
            };
            let d = p.decide("x", &r);
            (d.action, d.review)
        };
        assert_eq!(band(0.3, None), (Action::Allow, false));
        assert_eq!(band(0.5, None), (Action::Flag, true));
        assert_eq!(band(0.5, Some(0.6)), (Action::Allow, false));
        assert_eq!(band(0.9, None), (Action::Block, false));
    }
}
