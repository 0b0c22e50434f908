//! Output guards over a token stream. Text is held back until it is at least [`HOLD`] bytes behind the
//! newest token and cut at whitespace that no finding crosses, so an entity is always seen whole before any
//! of it is sent: PII and secrets are redacted in what is released, and a canary or a system-prompt leak
//! stops the stream before the offending text goes out.

use crate::policy::{Action, Policy};
use crate::{Guard, Report, ScanOptions};
use std::sync::Arc;

/// How far behind the newest token released text stays.
pub const HOLD: usize = 96;

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
    system_prompt: Option<String>,
    pending: String,
    /// Everything released so far (redacted), for system-prompt overlap across cuts.
    released: String,
    /// Counts of redactions and the stop reason, for metrics and audit.
    pub redactions: usize,
    pub stopped: Option<String>,
}

impl StreamGuard {
    pub fn new(
        guard: Arc<Guard>,
        policy: Policy,
        canaries: Vec<String>,
        system_prompt: Option<String>,
    ) -> Self {
        StreamGuard {
            guard,
            policy,
            canaries,
            system_prompt,
            pending: String::new(),
            released: String::new(),
            redactions: 0,
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
        let inside: Vec<_> = findings
            .into_iter()
            .filter(|f| f.end <= cut)
            .cloned()
            .collect();
        let sub = Report {
            pii: inside
                .iter()
                .filter(|f| report.pii.contains(f))
                .cloned()
                .collect(),
            secrets: inside
                .iter()
                .filter(|f| report.secrets.contains(f))
                .cloned()
                .collect(),
            ..Default::default()
        };
        let decision = self.policy.decide(&self.pending[..cut], &sub);
        if decision.action >= Action::Redact {
            self.redactions += sub.pii.len() + sub.secrets.len();
        }
        let emit = decision.text;
        self.pending.drain(..cut);
        self.released.push_str(&emit);
        if let Some(sys) = &self.system_prompt
            && self.policy.leak.action == Action::Block
            && let Some(f) = crate::leak::system_prompt_overlap(
                &format!("{}{}", self.released, self.pending),
                sys,
                8,
            )
        {
            let stop = f.reason.clone();
            self.stopped = Some(stop.clone());
            return Step {
                emit: String::new(),
                stop: Some(stop),
            };
        }
        Step { emit, stop: None }
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
