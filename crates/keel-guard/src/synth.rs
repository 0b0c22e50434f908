//! A seeded, span-labelled PII test set built from presidio-evaluator's sentence templates and its 3,000
//! fake identities, and the token-level scorer that compares any detector's spans with it (the same
//! scorer for Keel and for the anchor, so both are measured alike).
//!
//! Labelled types: person, email, phone, credit_card, iban, ssn, ip_address, date_of_birth, address.
//! Template slots that are place or organisation names, URLs, other dates and licence numbers are
//! *ignored*: a prediction there counts neither way. Everything else is `O`, where any prediction is a
//! false positive.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One labelled span (character offsets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Span {
    #[serde(rename = "type")]
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

/// One generated sentence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub text: String,
    pub spans: Vec<Span>,
    /// Regions (character offsets) where predictions are not scored.
    #[serde(default)]
    pub ignore: Vec<(usize, usize)>,
    pub template: usize,
}

/// The types the set labels.
pub const TYPES: &[&str] = &[
    "person",
    "email",
    "phone",
    "credit_card",
    "iban",
    "ssn",
    "ip_address",
    "date_of_birth",
    "address",
];

type Identity = BTreeMap<String, String>;

/// Reads FakeNameGenerator's CSV into identities.
pub fn identities(csv_text: &str) -> Result<Vec<Identity>, String> {
    let mut rdr = csv::Reader::from_reader(csv_text.trim_start_matches('\u{feff}').as_bytes());
    let headers = rdr.headers().map_err(|e| e.to_string())?.clone();
    let mut out = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        let r = r.map_err(|e| format!("row {}: {e}", i + 2))?;
        out.push(
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.trim().to_string()))
                .collect(),
        );
    }
    if out.is_empty() {
        return Err("no identities".into());
    }
    Ok(out)
}

fn luhn_complete(prefix: &str, len: usize, rng: &mut ChaCha8Rng) -> String {
    let mut d: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    while d.len() < len - 1 {
        d.push(rng.random_range(0..10));
    }
    for check in 0..10u8 {
        let mut t = d.clone();
        t.push(check);
        let sum: u32 = t
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &x)| {
                let v = x as u32 * if i % 2 == 1 { 2 } else { 1 };
                if v > 9 { v - 9 } else { v }
            })
            .sum();
        if sum.is_multiple_of(10) {
            return t.iter().map(|x| (b'0' + x) as char).collect();
        }
    }
    unreachable!("one check digit always completes a Luhn number")
}

fn card(rng: &mut ChaCha8Rng) -> String {
    let (prefix, len) = *[
        ("4", 16),
        ("51", 16),
        ("55", 16),
        ("2221", 16),
        ("34", 15),
        ("37", 15),
        ("6011", 16),
    ]
    .choose(rng)
    .expect("issuers");
    let n = luhn_complete(prefix, len, rng);
    match rng.random_range(0..3) {
        0 => n,
        k => {
            let sep = if k == 1 { " " } else { "-" };
            let groups: Vec<&str> = if len == 15 {
                vec![&n[..4], &n[4..10], &n[10..]]
            } else {
                (0..4).map(|i| &n[i * 4..i * 4 + 4]).collect()
            };
            groups.join(sep)
        }
    }
}

fn iban(rng: &mut ChaCha8Rng) -> String {
    let (cc, len) = *[
        ("DE", 22),
        ("GB", 22),
        ("FR", 27),
        ("ES", 24),
        ("IT", 27),
        ("NL", 18),
        ("CH", 21),
        ("PL", 28),
    ]
    .choose(rng)
    .expect("countries");
    let letters = matches!(cc, "GB" | "NL");
    let mut bban = String::new();
    if letters {
        for _ in 0..4 {
            bban.push((b'A' + rng.random_range(0..26)) as char);
        }
    }
    while bban.len() < len - 4 {
        bban.push((b'0' + rng.random_range(0..10)) as char);
    }
    // Check digits: 98 − (BBAN + CC + "00") mod 97.
    let rearranged = format!("{bban}{cc}00");
    let mut rem = 0u32;
    for c in rearranged.chars() {
        let v = c.to_digit(36).expect("alphanumeric");
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    let compact = format!("{cc}{:02}{bban}", 98 - rem);
    if rng.random_bool(0.5) {
        compact
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        compact
    }
}

fn ssn(rng: &mut ChaCha8Rng) -> String {
    let mut area = rng.random_range(1..900);
    if area == 666 {
        area = 667;
    }
    let (g, s) = (rng.random_range(1..100), rng.random_range(1..10000));
    match rng.random_range(0..10) {
        0..7 => format!("{area:03}-{g:02}-{s:04}"),
        7 => format!("{area:03} {g:02} {s:04}"),
        _ => format!("{area:03}{g:02}{s:04}"),
    }
}

fn ip(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.8) {
        let o: Vec<String> = (0..4)
            .map(|i| {
                rng.random_range(if i == 0 { 1 } else { 0 }..255)
                    .to_string()
            })
            .collect();
        o.join(".")
    } else {
        let g: Vec<String> = (0..8)
            .map(|_| format!("{:x}", rng.random_range(0..0x10000)))
            .collect();
        g.join(":")
    }
}

fn phone(id: &Identity, rng: &mut ChaCha8Rng) -> String {
    let local = id.get("TelephoneNumber").cloned().unwrap_or_default();
    let cc = id.get("TelephoneCountryCode").cloned().unwrap_or_default();
    match rng.random_range(0..4) {
        0 => local,
        1 | 2 if !cc.is_empty() => format!("+{cc} {}", local.trim_start_matches('0')),
        _ => {
            let (a, b, c) = (
                rng.random_range(201..990),
                rng.random_range(200..1000),
                rng.random_range(0..10000),
            );
            match rng.random_range(0..3) {
                0 => format!("({a}) {b}-{c:04}"),
                1 => format!("{a}-{b}-{c:04}"),
                _ => format!("+1 {a} {b} {c:04}"),
            }
        }
    }
}

fn birthday(id: &Identity, rng: &mut ChaCha8Rng) -> String {
    let b = id
        .get("Birthday")
        .cloned()
        .unwrap_or_else(|| "1/1/1980".into());
    let p: Vec<u32> = b.split('/').filter_map(|x| x.parse().ok()).collect();
    let (m, d, y) = if p.len() == 3 {
        (p[0], p[1], p[2])
    } else {
        (1, 1, 1980)
    };
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let name = MONTHS[(m.clamp(1, 12) - 1) as usize];
    match rng.random_range(0..4) {
        0 => format!("{m}/{d}/{y}"),
        1 => format!("{y}-{m:02}-{d:02}"),
        2 => format!("{name} {d}, {y}"),
        _ => format!("{d} {name} {y}"),
    }
}

/// (value, label): label is a type, "ignore", or "" (plain text).
fn fill(slot: &str, id: &Identity, rng: &mut ChaCha8Rng) -> (String, &'static str) {
    let get = |k: &str| id.get(k).cloned().unwrap_or_default();
    let full = format!("{} {}", get("GivenName"), get("Surname"));
    let street = get("StreetAddress");
    match slot {
        "person" | "name" | "name_female" | "name_male" => (full, "person"),
        "first_name" | "first_name_male" | "first_name_female" | "first_name_nonbinary" => {
            (get("GivenName"), "person")
        }
        "last_name" | "last_name_male" | "last_name_female" => (get("Surname"), "person"),
        "prefix" | "prefix_male" | "prefix_female" => (get("Title"), ""),
        "email" => (get("EmailAddress"), "email"),
        "phone_number" => (phone(id, rng), "phone"),
        "credit_card_number" => (card(rng), "credit_card"),
        "iban" => (iban(rng), "iban"),
        "ssn" => (ssn(rng), "ssn"),
        "ip_address" => (ip(rng), "ip_address"),
        "date_of_birth" => (birthday(id, rng), "date_of_birth"),
        "address" => {
            let mut a = format!("{street}, {}", get("City"));
            if !get("State").is_empty() {
                a.push(' ');
                a.push_str(&get("State"));
            }
            a.push(' ');
            a.push_str(&get("ZipCode"));
            (a, "address")
        }
        "street_name" => {
            let s: Vec<&str> = street
                .split_whitespace()
                .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                .collect();
            (s.join(" "), "ignore")
        }
        "building_number" => (rng.random_range(1..2000).to_string(), "ignore"),
        "secondary_address" => (
            format!(
                "{} {}",
                ["Apt.", "Suite", "Unit"].choose(rng).expect("kinds"),
                rng.random_range(1..500)
            ),
            "ignore",
        ),
        "city" => (get("City"), "ignore"),
        "country" => (get("CountryFull"), "ignore"),
        "postcode" | "zipcode" => (get("ZipCode"), "ignore"),
        "state_abbr" => (get("State"), "ignore"),
        "organization" => (get("Company"), "ignore"),
        "url" => (
            format!("https://www.{}", get("Domain").to_lowercase()),
            "ignore",
        ),
        "date_time" => (
            format!(
                "{}/{}/{}",
                rng.random_range(1..13),
                rng.random_range(1..29),
                rng.random_range(1990..2026)
            ),
            "ignore",
        ),
        "us_driver_license" => (
            format!(
                "{}{:07}",
                (b'A' + rng.random_range(0..26)) as char,
                rng.random_range(0..10_000_000)
            ),
            "ignore",
        ),
        "nationality" | "nation_woman" | "nation_plural" => (get("NameSet"), "ignore"),
        "job" => (get("Occupation"), ""),
        "age" => (get("Age"), ""),
        "year" => (rng.random_range(1950..2026).to_string(), ""),
        "day_of_week" => (
            ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
                .choose(rng)
                .expect("days")
                .to_string(),
            "",
        ),
        other => (format!("{{{{{other}}}}}"), ""),
    }
}

/// Fills `n` templates chosen uniformly (seeded) with values from random identities.
pub fn generate(templates: &str, ids: &[Identity], n: usize, seed: u64) -> Vec<Sample> {
    let templates: Vec<String> = templates
        .lines()
        .map(|l| {
            l.trim_start_matches('\u{feff}')
                .replace("\\n", "\n")
                .replace("\\,", ",")
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = rng.random_range(0..templates.len());
        let tpl = &templates[t];
        let id = ids.choose(&mut rng).expect("identities");
        let mut text = String::new();
        let mut spans = Vec::new();
        let mut ignore = Vec::new();
        let mut rest = tpl.as_str();
        while let Some(i) = rest.find("{{") {
            let Some(j) = rest[i..].find("}}") else { break };
            text.push_str(&rest[..i]);
            let slot = &rest[i + 2..i + j];
            let (value, label) = fill(slot, id, &mut rng);
            let start = text.chars().count();
            text.push_str(&value);
            let end = text.chars().count();
            match label {
                "" => {}
                "ignore" => ignore.push((start, end)),
                kind if end > start => spans.push(Span {
                    kind: kind.into(),
                    start,
                    end,
                }),
                _ => {}
            }
            rest = &rest[i + j + 2..];
        }
        text.push_str(rest);
        out.push(Sample {
            text,
            spans,
            ignore,
            template: t,
        });
    }
    out
}

/// Token-level precision, recall and F2 (β = 2: recall counts four times as much as precision).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Score {
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub precision: f64,
    pub recall: f64,
    pub f2: f64,
}

impl Score {
    fn finish(mut self) -> Self {
        self.precision = if self.tp + self.fp == 0 {
            0.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        };
        self.recall = if self.tp + self.fn_ == 0 {
            0.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        };
        let (p, r) = (self.precision, self.recall);
        self.f2 = if p + r == 0.0 {
            0.0
        } else {
            5.0 * p * r / (4.0 * p + r)
        };
        self
    }
}

/// Scores predicted spans (character offsets; types already mapped to [`TYPES`], others dropped) against the
/// set. Tokens are runs of letters and digits; a token's label is the type of the span covering it.
pub fn score(samples: &[Sample], predictions: &[Vec<Span>]) -> (Score, BTreeMap<String, Score>) {
    let mut total = Score::default();
    let mut per: BTreeMap<String, Score> = TYPES
        .iter()
        .map(|t| (t.to_string(), Score::default()))
        .collect();
    for (s, preds) in samples.iter().zip(predictions) {
        let chars: Vec<char> = s.text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if !chars[i].is_alphanumeric() {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && chars[i].is_alphanumeric() {
                i += 1;
            }
            let covers = |a: usize, b: usize| a <= start && i <= b;
            if s.ignore.iter().any(|&(a, b)| covers(a, b)) {
                continue;
            }
            let gold = s
                .spans
                .iter()
                .find(|sp| covers(sp.start, sp.end))
                .map(|sp| sp.kind.as_str());
            let pred = preds
                .iter()
                .find(|sp| sp.start < i && start < sp.end && TYPES.contains(&sp.kind.as_str()))
                .map(|sp| sp.kind.as_str());
            match (gold, pred) {
                (Some(g), Some(p)) if g == p => {
                    total.tp += 1;
                    per.get_mut(g).expect("type").tp += 1;
                }
                (g, p) => {
                    if let Some(g) = g {
                        total.fn_ += 1;
                        per.get_mut(g).expect("type").fn_ += 1;
                    }
                    if let Some(p) = p {
                        total.fp += 1;
                        per.get_mut(p).expect("type").fp += 1;
                    }
                }
            }
        }
    }
    (
        total.finish(),
        per.into_iter().map(|(k, v)| (k, v.finish())).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_are_valid_and_scoring_counts_tokens() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let c: String = card(&mut rng)
                .chars()
                .filter(|c| c.is_ascii_digit())
                .collect();
            let d: Vec<u8> = c.bytes().map(|b| b - b'0').collect();
            assert!(crate::pii::luhn(&d), "{c}");
            assert!(crate::pii::iban_ok(&iban(&mut rng)));
        }
        let id: Identity = [
            ("GivenName", "Marie"),
            ("Surname", "Curie"),
            ("EmailAddress", "m@x.org"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let set = generate("Hi {{person}}, mail {{email}} in {{city}}", &[id], 3, 7);
        assert_eq!(set[0].text, "Hi Marie Curie, mail m@x.org in ");
        assert_eq!(
            set[0].spans[0],
            Span {
                kind: "person".into(),
                start: 3,
                end: 14
            }
        );
        let perfect: Vec<Vec<Span>> = set.iter().map(|s| s.spans.clone()).collect();
        let (t, _) = score(&set, &perfect);
        assert_eq!((t.tp, t.fp, t.fn_), (3 * 5, 0, 0)); // Marie, Curie, m, x, org
        let none: Vec<Vec<Span>> = vec![vec![]; 3];
        assert_eq!(score(&set, &none).0.recall, 0.0);
        let wrong = vec![
            vec![Span {
                kind: "phone".into(),
                start: 0,
                end: 2
            }];
            3
        ];
        let (w, per) = score(&set, &wrong);
        assert_eq!(w.fp, 3);
        assert_eq!(per["phone"].fp, 3);
    }
}
