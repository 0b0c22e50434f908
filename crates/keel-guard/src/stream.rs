//! Output guards over a token stream. Text is held back until it is at least [`HOLD`] bytes behind the
//! newest token and cut at whitespace that no finding crosses, so an entity is always seen whole before any
//! of it is sent: PII and secrets are redacted in what is released, and a canary or a system-prompt leak
//! stops the stream before the offending text goes out.

use crate::leak::PromptIndex;
use crate::policy::{Action, Decision, Policy};
use crate::{Guard, Report, ScanOptions};
use std::sync::Arc;

/// How far behind the newest token released text stays.
pub const HOLD: usize = 96;

/// Consecutive system-prompt words that count as a leak.
const OVERLAP_WORDS: usize = 8;
/// Released bytes kept for the overlap check: enough for a run of [`OVERLAP_WORDS`] long words to reach back
/// across a cut (a longer run was already caught at an earlier release).
const OVERLAP_TAIL: usize = 512;

/// What one step of the stream releases.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Text to send now (redacted).
    pub emit: String,
    /// Set when the stream must stop; the reason (no sensitive text in it).
    pub stop: Option<String>,
}

pub struct StreamGuard {
    guard: Arc<Guard>,
    policy: Policy,
    canaries: Vec<String>,
    /// The system prompt's n-grams, indexed once (when leaks are blocked).
    prompt: Option<PromptIndex>,
    pending: String,
    /// The last [`OVERLAP_TAIL`] bytes released, so an overlap reaching back across a cut is still seen.
    released_tail: String,
    /// Redacted PII and secret findings so far, and the stop reason: the stream's decision.
    redacted_pii: usize,
    redacted_secrets: usize,
    pub stopped: Option<String>,
}

impl StreamGuard {
    pub fn new(
        guard: Arc<Guard>,
        policy: Policy,
        canaries: Vec<String>,
        system_prompt: Option<String>,
    ) -> Self {
        let prompt = system_prompt
            .filter(|_| policy.leak.action == Action::Block)
            .map(|p| PromptIndex::new(&p, OVERLAP_WORDS));
        StreamGuard {
            guard,
            policy,
            canaries,
            prompt,
            pending: String::new(),
            released_tail: String::new(),
            redacted_pii: 0,
            redacted_secrets: 0,
            stopped: None,
        }
    }

    fn report(&self, text: &str) -> Report {
        let opts = ScanOptions {
            injection: false,
            pii: self.policy.pii.action != Action::Allow,
            secrets: self.policy.secrets.action != Action::Allow,
            canaries: if self.policy.leak.action == Action::Allow {
                &[]
            } else {
                &self.canaries
            },
            system_prompt: None,
        };
        self.guard.scan(text, &opts)
    }

    /// Adds generated text; returns what may be released now.
    pub fn push(&mut self, token: &str) -> Step {
        if self.stopped.is_some() {
            return Step::default();
        }
        self.pending.push_str(token);
        if self.pending.len() < 2 * HOLD {
            return Step::default();
        }
        self.release(false)
    }

    /// The stream ended: release the rest.
    pub fn finish(&mut self) -> Step {
        if self.stopped.is_some() {
            return Step::default();
        }
        self.release(true)
    }

    fn release(&mut self, all: bool) -> Step {
        let report = self.report(&self.pending);
        if let Some(stop) = self.leak_stop(&report) {
            self.stopped = Some(stop.clone());
            self.pending.clear();
            return Step {
                emit: String::new(),
                stop: Some(stop),
            };
        }
        let mut cut = if all {
            self.pending.len()
        } else {
            let limit = self.pending.len() - HOLD;
            match self.pending[..limit].rfind(char::is_whitespace) {
                Some(i) => i + 1,
                None => return Step::default(),
            }
        };
        // Never cut through a finding: move the cut back to its start.
        let findings: Vec<_> = report.pii.iter().chain(&report.secrets).collect();
        while let Some(f) = findings.iter().find(|f| f.start < cut && f.end > cut) {
            cut = f.start;
        }
        if cut == 0 {
            return Step::default();
        }
        // The system prompt repeated in what was released lately plus what waits: stop before sending.
        if let Some(f) = self
            .prompt
            .as_ref()
            .and_then(|p| p.overlap(&format!("{}{}", self.released_tail, self.pending)))
        {
            self.stopped = Some(f.reason.clone());
            return Step {
                emit: String::new(),
                stop: Some(f.reason),
            };
        }
        let before_cut =
            |fs: &[crate::Finding]| fs.iter().filter(|f| f.end <= cut).cloned().collect();
        let sub = Report {
            pii: before_cut(&report.pii),
            secrets: before_cut(&report.secrets),
            ..Default::default()
        };
        let decision = self.policy.decide(&self.pending[..cut], &sub);
        if decision.action >= Action::Redact {
            self.redacted_pii += sub.pii.len();
            self.redacted_secrets += sub.secrets.len();
        }
        let emit = decision.text;
        self.pending.drain(..cut);
        self.released_tail.push_str(&emit);
        if self.released_tail.len() > OVERLAP_TAIL {
            let mut from = self.released_tail.len() - OVERLAP_TAIL;
            while !self.released_tail.is_char_boundary(from) {
                from += 1;
            }
            self.released_tail.drain(..from);
        }
        Step { emit, stop: None }
    }

    /// What the guard did to the stream so far, as a policy decision (for metrics and the audit log).
    pub fn decision(&self) -> Decision {
        let mut counts = Vec::new();
        let mut reasons = Vec::new();
        if let Some(s) = &self.stopped {
            counts.push(("leak", 1));
            reasons.push(format!("leak: {s}"));
        }
        for (name, n) in [
            ("pii", self.redacted_pii),
            ("secrets", self.redacted_secrets),
        ] {
            if n > 0 {
                counts.push((name, n));
                reasons.push(format!("{name}: {n} redacted"));
            }
        }
        let action = if self.stopped.is_some() {
            Action::Block
        } else if self.redacted_pii + self.redacted_secrets > 0 {
            Action::Redact
        } else {
            Action::Allow
        };
        Decision {
            action,
            blocked: action == Action::Block,
            review: false,
            reasons,
            text: String::new(),
            counts,
            blocked_by: if self.stopped.is_some() {
                vec!["leak"]
            } else {
                Vec::new()
            },
        }
    }

    fn leak_stop(&self, report: &Report) -> Option<String> {
        (self.policy.leak.action == Action::Block && !report.leaks.is_empty()).then(|| {
            report
                .leaks
                .iter()
                .map(|f| f.reason.clone())
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}
