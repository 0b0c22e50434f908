//! PII detectors. Patterns find candidates; checksums, valid ranges and context decide:
//! e-mail, phone (international and national formats, with context for short ones), credit card (Luhn and
//! issuer prefixes), IBAN (mod 97 and per-country length), US SSN (valid area/group/serial), IPv4/IPv6
//! (parsed), dates of birth (a date with birth context), street addresses (house number + street word,
//! or address context), and person names (capitalised words that a dictionary does not know as common
//! words, or that follow a name cue such as "Mr." or "my name is").

use crate::Finding;
use foldhash::HashSet;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// Common words and proper names, from the American English word list (Debian `wamerican`).
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    /// Words the list has in lower case ("please", "bank", "will").
    common: HashSet<String>,
    /// Words the list has capitalised ("Marie", "Ramos", "Paris").
    proper: HashSet<String>,
}

/// The lexicon as stored in the guard model: the word list, one word per entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredLexicon {
    pub words: Vec<String>,
}

impl StoredLexicon {
    /// Reads a word list (one word per line; possessives "'s" are dropped).
    pub fn from_word_list(text: &str) -> StoredLexicon {
        let mut words: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|w| !w.is_empty() && !w.ends_with("'s"))
            .map(String::from)
            .collect();
        words.sort();
        words.dedup();
        StoredLexicon { words }
    }
}

impl Lexicon {
    pub fn new(stored: &StoredLexicon) -> Lexicon {
        let mut lex = Lexicon::default();
        for w in &stored.words {
            // "I" and its contractions ("I'm", "I'll") are capitalised in the list but are ordinary words.
            if w == "I" || w.starts_with("I'") {
                lex.common.insert(w.to_lowercase());
            } else if w.chars().next().is_some_and(char::is_uppercase) {
                lex.proper.insert(w.clone());
            } else {
                lex.common.insert(w.clone());
            }
        }
        lex
    }

    /// How a capitalised word reads.
    fn class(&self, word: &str, sentence_start: bool) -> WordClass {
        let w = word
            .trim_end_matches(['\'', '’'])
            .trim_end_matches("'s")
            .trim_end_matches("’s");
        if STOP_CAPS.contains(&w) {
            return WordClass::Common;
        }
        let lower = w.to_lowercase();
        let common = self.common.contains(&lower)
            || (lower.len() > 3
                && lower.ends_with('s')
                && self.common.contains(&lower[..lower.len() - 1]));
        let proper = self.proper.contains(w);
        match (proper, common) {
            (true, false) => WordClass::Name,
            (false, false) => WordClass::Unknown,
            // A dictionary word at the start of a sentence is that word ("Will you…", "He said").
            (true, true) if !sentence_start && w.chars().count() > 2 => WordClass::Ambiguous,
            _ => WordClass::Common,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum WordClass {
    /// A proper name in the dictionary that is not also a common word ("Marie").
    Name,
    /// Not in the dictionary at all ("Hamanová").
    Unknown,
    /// Both a proper name and a common word ("Will", "Love").
    Ambiguous,
    /// An ordinary word.
    Common,
}

/// Capitalised words that are never names on their own: months, days, pronouns, salutations.
const STOP_CAPS: &[&str] = &[
    "I",
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
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "God",
    "Internet",
    "English",
    "Christmas",
    "Easter",
    "Dear",
    "Hi",
    "Hello",
    "Thanks",
    "Regards",
    "Sir",
    "Madam",
    "Mobile",
    "Desk",
    "Fax",
    "Office",
    "Phone",
    "Email",
    "Address",
    "Name",
    "Date",
    "Billing",
    "Yes",
    "No",
    "OK",
    "Ok",
    "Okay",
    "Please",
    "Cc",
    "Re",
    "Fwd",
    "Subject",
    "From",
    "To",
    "Street",
    "Road",
    "Avenue",
];

const HONORIFICS: &[&str] = &[
    "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Sir", "Madam", "Mister", "Lady", "Lord", "Rev",
    "Capt", "Sr", "Jr", "Mme", "Mlle", "Herr", "Frau", "Señor", "Señora", "Sra", "Sig", "Signora",
];

/// Phrases just before a capitalised run that make it a person's name.
static NAME_CUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:\bmy name is|\bname is|\bname:|\bnamed|\bcalled|\bi am|\bi'm|\bthis is|\bspeak to|\bspeak with|\btalk to|\bask for|\bdear|\bhi|\bhello|\bthanks|\bregards,?|\bsincerely,?|\bcontact|\bsigned|\bguardian|\bmanager|\bwife|\bhusband|\bson|\bdaughter|\bfriend|\bcustomer|\bpatient|\bemployee|\bby|\bwith|\band|\bms\.?|\bmr\.?)\s*[:,]?\s*$").expect("cue")
});

/// Words after which a lone capitalised word is a place, not a person.
const PLACE_CUES: &[&str] = &[
    "in", "to", "from", "at", "near", "visit", "visiting", "of", "across", "into",
];

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,24}\b").expect("email")
});
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").expect("card"));
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b").expect("iban"));
static SSN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{3})([- ]?)(\d{2})([- ]?)(\d{4})\b").expect("ssn"));
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(?:\d{1,3}\.){3}\d{1,3}\b").expect("ipv4"));
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:\b|::)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\b|::)").expect("ipv6")
});
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:\+|\b00)?\(?\d[\d().\- ]{4,20}\d\b").expect("phone"));
static PHONE_CUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(phone|call|tel\b|telephone|mobile|cell|fax|number|reach|contact|whatsapp|sms|text me|desk|office|ring)").expect("phone cue")
});
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|\d{4}-\d{2}-\d{2}|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?,? \d{4}|\d{1,2}(?:st|nd|rd|th)? (?:of )?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?,? \d{4})\b").expect("date")
});
static DOB_CUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(born|birth|dob\b|d\.o\.b|birthday|b-day|since)").expect("dob cue")
});
static STREET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?x)
        \b(?:P\.?\s?O\.?\s+Box\s+\d{1,6}
        |\d{1,6}[A-Za-z]?(?:\s+[\p{Lu}][\p{L}'.-]*){1,4}\s+(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Terrace|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Crescent|Close|Row|Alley|Loop|Path|Pike|Walk|Plaza|Park)\b\.?
        |\d{1,6}[A-Za-z]?(?:\s+[\p{Lu}][\p{L}'.-]*){1,3}
        |(?:Via|Viale|Rua|Avenida|Av\.|Calle|Carrer|Rue|Boulevard|Chemin|Place|Plaza|Trg|Ulica|ul\.|Strada|Piazza|Largo|Travessa|Praça|Paseo)(?:\s+[\p{L}'.-]+){1,4}\s+\d{1,5}[A-Za-z]?
        |[\p{Lu}][\p{L}'-]*(?:straße|strasse|stasse|str\.|gasse|weg|platz|allee|gade|vej|gatan|vägen|väg|veien|vegen|gata|katu|tie|kuja|utca|laan|straat|plein|gracht|dijk|lundur|vegur|gata|stræde|torv|ulice|cesta|ulica)\s+\d{1,5}[A-Za-z]?
        )").expect("street")
});
static ADDRESS_CUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(address|live at|lives at|living at|located at|ship to|send (?:it )?to|deliver(?:ed)? to|mail to|reside at|residing at|moved to)\b").expect("address cue")
});
/// A whole postal address on one line: street and house number (either order), a comma, a locality, an
/// optional region code and a postcode. The full shape needs no context.
static ADDRESS_FULL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        (?:\d{1,6}[A-Za-z]?\.?(?:\x20[\p{L}][\p{L}'.-]*){1,5}
          |(?:[\p{L}][\p{L}'.-]*\x20){1,5}\d{1,6}[A-Za-z]?\.?)
        ,\x20
        [\p{Lu}][\p{L}'.-]*(?:\x20[\p{L}][\p{L}'.-]*){0,3}
        (?:\x20(?:\d{3,6}(?:[\x20-]\d{2,4})?(?:\x20[A-Z]{2}\b)?|[A-Z]\d[A-Z]\x20?\d[A-Z]\d))\b
    ",
    )
    .expect("full address")
});

/// After a street: ", City", a region code and a postcode, on the same line.
static ADDRESS_TAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:,? ?(?:[\p{Lu}][\p{L}'.-]*)(?: [\p{Lu}][\p{L}'.-]*){0,3})?(?: [A-Z]{2,3})?(?:,? ?(?:[A-Z]{1,2}\d[A-Z0-9]? ?\d[A-Z]{2}|[A-Z]\d[A-Z] ?\d[A-Z]\d|\d{2,6}(?:[ -]\d{2,4})?(?: [A-Z]{2}\b)?))?").expect("tail")
});
static WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\p{L}][\p{L}\p{M}'’-]*\.?").expect("word"));

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = d as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn card_issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| d.iter().take(k).fold(0u32, |a, &x| a * 10 + x as u32);
    match d[0] {
        4 => matches!(n, 13 | 16 | 19),
        5 => (51..=55).contains(&p(2)) && n == 16,
        2 => (2221..=2720).contains(&p(4)) && n == 16,
        3 => {
            (matches!(p(2), 34 | 37) && n == 15)
                || (p(2) == 35 && n >= 16)
                || (matches!(p(2), 30 | 36 | 38) && n >= 14)
        }
        6 => (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) || p(2) == 62) && n >= 16,
        _ => false,
    }
}

/// IBAN lengths per country (the common ones); others accept 15–34.
fn iban_len(cc: &str) -> Option<usize> {
    Some(match cc {
        "DE" => 22,
        "GB" => 22,
        "FR" => 27,
        "ES" => 24,
        "IT" => 27,
        "NL" => 18,
        "BE" => 16,
        "AT" => 20,
        "CH" => 21,
        "PL" => 28,
        "PT" => 25,
        "SE" => 24,
        "DK" => 18,
        "FI" => 18,
        "NO" => 15,
        "IE" => 22,
        "CZ" => 24,
        "HU" => 28,
        "GR" => 27,
        "LU" => 20,
        "SI" => 19,
        "HR" => 21,
        "SK" => 24,
        "EE" => 20,
        "LT" => 20,
        "LV" => 21,
        "IS" => 26,
        "CY" => 28,
        "MT" => 31,
        "RO" => 24,
        "BG" => 22,
        "GL" => 18,
        "TN" => 24,
        "BR" => 29,
        "SA" => 24,
        "AE" => 23,
        "TR" => 26,
        "IL" => 23,
        _ => return None,
    })
}

pub(crate) fn iban_ok(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    if let Some(l) = iban_len(&compact[..2])
        && l != compact.len()
    {
        return false;
    }
    let rearranged = compact[4..].chars().chain(compact[..4].chars());
    let mut rem: u32 = 0;
    for c in rearranged {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn ssn_ok(area: &str, group: &str, serial: &str) -> bool {
    let a: u32 = area.parse().unwrap_or(0);
    a != 0 && a != 666 && a < 900 && group != "00" && serial != "0000"
}

/// The few words before `start` (same line), lower-cased.
fn before(text: &str, start: usize, bytes: usize) -> &str {
    let mut from = start.saturating_sub(bytes);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let s = &text[from..start];
    match s.rfind('\n') {
        Some(i) => &s[i + 1..],
        None => s,
    }
}

/// Every PII finding in `text` (byte offsets), overlaps resolved by detector priority.
pub fn detect(text: &str, lex: &Lexicon) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    let push = |found: &mut Vec<Finding>,
                kind: &'static str,
                s: usize,
                e: usize,
                score: f32,
                reason: &str| {
        if !found.iter().any(|f| f.start < e && s < f.end) {
            found.push(Finding {
                kind,
                start: s,
                end: e,
                score,
                reason: reason.to_string(),
            });
        }
    };
    for m in EMAIL.find_iter(text) {
        push(
            &mut found,
            "email",
            m.start(),
            m.end(),
            1.0,
            "e-mail address",
        );
    }
    for m in IBAN.find_iter(text) {
        // The pattern may run into a following word; trim to the longest valid prefix on a group boundary.
        let s = m.as_str().trim_end();
        if iban_ok(s) {
            push(
                &mut found,
                "iban",
                m.start(),
                m.start() + s.len(),
                1.0,
                "IBAN with a valid mod-97 check",
            );
        }
    }
    for m in CARD.find_iter(text) {
        let digits: Vec<u8> = m
            .as_str()
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        if card_issuer_ok(&digits) && luhn(&digits) {
            push(
                &mut found,
                "credit_card",
                m.start(),
                m.end(),
                1.0,
                "card number with a valid Luhn check",
            );
        }
    }
    for c in SSN.captures_iter(text) {
        let m = c.get(0).expect("match");
        let (a, s1, g, s2, ser) = (&c[1], &c[2], &c[3], &c[4], &c[5]);
        let separated = !s1.is_empty() && s1 == s2;
        let context = before(text, m.start(), 48).to_lowercase();
        let cue = context.contains("ssn")
            || context.contains("social security")
            || context.contains("ss#");
        if ssn_ok(a, g, ser) && ((separated && s1 == "-") || cue) && (s1 == s2) {
            push(
                &mut found,
                "ssn",
                m.start(),
                m.end(),
                if cue { 1.0 } else { 0.8 },
                "US SSN in a valid range",
            );
        }
    }
    for m in IPV4.find_iter(text) {
        if m.as_str().parse::<std::net::Ipv4Addr>().is_ok() {
            push(
                &mut found,
                "ip_address",
                m.start(),
                m.end(),
                1.0,
                "IPv4 address",
            );
        }
    }
    for m in IPV6.find_iter(text) {
        let s = m.as_str();
        if s.matches(':').count() >= 2 && s.parse::<std::net::Ipv6Addr>().is_ok() {
            push(
                &mut found,
                "ip_address",
                m.start(),
                m.end(),
                1.0,
                "IPv6 address",
            );
        }
    }
    for m in DATE.find_iter(text) {
        let ctx = before(text, m.start(), 40);
        if DOB_CUE.is_match(ctx) {
            push(
                &mut found,
                "date_of_birth",
                m.start(),
                m.end(),
                0.9,
                "date in a date-of-birth context",
            );
        }
    }
    for m in PHONE.find_iter(text) {
        let s = m.as_str().trim_end_matches(['(', '-', '.', ' ']);
        let (start, end) = (m.start(), m.start() + s.len());
        let digits = s.bytes().filter(u8::is_ascii_digit).count();
        if !(6..=15).contains(&digits) || DATE.is_match(s) && digits <= 8 {
            continue;
        }
        let intl = s.starts_with('+') || s.starts_with("00");
        let grouped = s.contains(['-', ' ', '.', '(']);
        let cue = PHONE_CUE.is_match(before(text, start, 40));
        // Years and amounts are digit runs too: a phone number needs a + prefix, phone-like grouping with
        // seven digits or more, or a phone word before it.
        let ok = (intl && digits >= 7) || (grouped && digits >= 9) || (cue && digits >= 6);
        if ok {
            push(
                &mut found,
                "phone",
                start,
                end,
                if intl || cue { 1.0 } else { 0.7 },
                "phone number",
            );
        }
    }
    for m in ADDRESS_FULL.find_iter(text) {
        // The pattern may start on ordinary words before the street ("Meet me at Östanlid 36, …"): drop
        // leading dictionary words, keeping at least one word before the house number.
        let mut start = m.start();
        let street = m.as_str().split(',').next().unwrap_or("");
        let words: Vec<&str> = street.split(' ').collect();
        if !words[0].starts_with(|c: char| c.is_ascii_digit()) {
            for w in &words[..words.len().saturating_sub(2)] {
                if lex.common.contains(&w.to_lowercase()) {
                    start += w.len() + 1;
                } else {
                    break;
                }
            }
        }
        let has_cap = text[start..m.end()]
            .split(',')
            .next()
            .is_some_and(|st| st.split(' ').any(is_capitalised));
        if has_cap {
            push(&mut found, "address", start, m.end(), 0.9, "postal address");
        }
    }
    for m in STREET.find_iter(text) {
        let s = m.as_str();
        // A bare "number + capitalised words" needs address context; a street word or P.O. box does not.
        let keyword = !s.chars().next().is_some_and(|c| c.is_ascii_digit())
            || s.split_whitespace().last().is_some_and(|w| {
                let w = w.trim_end_matches('.');
                matches!(
                    w,
                    "Street"
                        | "St"
                        | "Avenue"
                        | "Ave"
                        | "Road"
                        | "Rd"
                        | "Lane"
                        | "Ln"
                        | "Drive"
                        | "Dr"
                        | "Boulevard"
                        | "Blvd"
                        | "Way"
                        | "Court"
                        | "Ct"
                        | "Place"
                        | "Pl"
                        | "Terrace"
                        | "Circle"
                        | "Cir"
                        | "Parkway"
                        | "Pkwy"
                        | "Highway"
                        | "Hwy"
                        | "Square"
                        | "Sq"
                        | "Trail"
                        | "Crescent"
                        | "Close"
                        | "Row"
                        | "Alley"
                        | "Loop"
                        | "Path"
                        | "Pike"
                        | "Walk"
                        | "Plaza"
                        | "Park"
                )
            });
        let cue = ADDRESS_CUE.is_match(before(text, m.start(), 60));
        if !(keyword || cue) {
            continue;
        }
        let mut end = m.end();
        if let Some(t) = ADDRESS_TAIL.find(&text[end..]) {
            end += t.end();
        }
        push(
            &mut found,
            "address",
            m.start(),
            end,
            if keyword { 0.9 } else { 0.7 },
            "street address",
        );
    }
    persons(text, lex, &mut found);
    found.sort_by_key(|f| f.start);
    found
}

/// [`detect`], with person names only where the language supports them ([`crate::lang`]): the findings, the
/// detected language (detected only when a name was found), and whether names were checked.
pub fn detect_in_language(
    text: &str,
    lex: &Lexicon,
) -> (Vec<Finding>, Option<crate::lang::Language>, bool) {
    let mut found = detect(text, lex);
    // Language detection costs more than the rest of the scan; it is needed only to judge name findings.
    if !found.iter().any(|f| f.kind == "person") {
        return (found, None, true);
    }
    let language = crate::lang::detect(text);
    let names = crate::lang::names_supported(language.as_ref());
    if !names {
        found.retain(|f| f.kind != "person");
    }
    (found, language, names)
}

/// Person names: runs of capitalised words, judged by cues and the lexicon.
fn persons(text: &str, lex: &Lexicon, found: &mut Vec<Finding>) {
    // Words with their byte spans; a run continues over single spaces only.
    let words: Vec<(usize, usize)> = WORD.find_iter(text).map(|m| (m.start(), m.end())).collect();
    let word = |k: usize| text[words[k].0..words[k].1].trim_end_matches('.');
    let mut i = 0;
    while i < words.len() {
        let (s, _) = words[i];
        let ctx = before(text, s, 40);
        let sentence_start = {
            let t = ctx.trim_end();
            t.is_empty() || t.ends_with(['.', '!', '?', ':', '>', '"', ';', '-'])
        };
        let w = word(i);
        if !is_capitalised(w) || HONORIFICS.contains(&w) {
            i += 1;
            continue;
        }
        let first = lex.class(w, sentence_start);
        if first == WordClass::Common {
            i += 1;
            continue;
        }
        // Extend over following capitalised, non-common words separated by one space.
        let mut classes = vec![first];
        let mut j = i;
        while j + 1 < words.len() {
            let (ns, _) = words[j + 1];
            let nw = word(j + 1);
            let gap = &text[words[j].1..ns];
            let c = lex.class(nw, false);
            if (gap == " " || (gap.is_empty() && text[..ns].ends_with('.')))
                && is_capitalised(nw)
                && c != WordClass::Common
            {
                classes.push(c);
                j += 1;
            } else {
                break;
            }
        }
        let start = s;
        let end = words[j].1;
        let end = if text[start..end].ends_with('.') && !is_initial(&text[start..end]) {
            end - 1
        } else {
            end
        };
        let prev_word = ctx
            .split_whitespace()
            .last()
            .unwrap_or("")
            .trim_end_matches([',', ':']);
        let honorific = HONORIFICS.contains(&prev_word.trim_end_matches('.'));
        let cue = honorific || NAME_CUE.is_match(ctx);
        let len = classes.len();
        let strong = classes.contains(&WordClass::Name);
        let unknown = classes.contains(&WordClass::Unknown);
        let place = len == 1 && PLACE_CUES.contains(&prev_word.to_lowercase().as_str());
        let long_enough = text[start..end].chars().count() >= 2;
        let accept = long_enough && !place && (cue || strong || unknown || len >= 2);
        if accept {
            let score = if cue {
                0.95
            } else if len >= 2 {
                0.85
            } else {
                0.6
            };
            if !found.iter().any(|f| f.start < end && start < f.end) {
                found.push(Finding {
                    kind: "person",
                    start,
                    end,
                    score,
                    reason: "person name".into(),
                });
            }
        }
        i = j + 1;
    }
}

/// Title case: an upper-case letter, then a lower-case one as the next letter ("Marie", "O'Brien", not
/// "CEOs" or "ATM").
fn is_capitalised(w: &str) -> bool {
    let mut cs = w.chars();
    match cs.next() {
        Some(c) if c.is_uppercase() => cs
            .find(|c| c.is_alphabetic())
            .is_none_or(char::is_lowercase),
        _ => false,
    }
}

fn is_initial(w: &str) -> bool {
    w.len() == 2 && w.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex() -> Lexicon {
        Lexicon::new(&StoredLexicon::from_word_list(
            "please\ncall\nme\nbank\nstreet\nthe\nwill\nWill\nMarie\nRamos\nParis\nhello\nmy\nname\nis\ncan\nspeak\nboss\nshe\nwas\nborn\non\nmeeting\ni\nflew\nto\nlive\nat\nin\nwe\nsold\nunits\nmail\nphone\ncard\nok\nref\nfrom\ntoday\nversion\nvia\nnow\n",
        ))
    }

    fn kinds(t: &str) -> Vec<(&'static str, String)> {
        detect(t, &lex())
            .into_iter()
            .map(|f| (f.kind, t[f.start..f.end].to_string()))
            .collect()
    }

    #[test]
    fn checksums_decide() {
        assert_eq!(
            kinds("card 4111 1111 1111 1111 ok"),
            vec![("credit_card", "4111 1111 1111 1111".into())]
        );
        assert!(
            kinds("card 4111 1111 1111 1112 ok")
                .iter()
                .all(|(k, _)| *k != "credit_card")
        );
        assert_eq!(
            kinds("IBAN GB82 WEST 1234 5698 7654 32"),
            vec![("iban", "GB82 WEST 1234 5698 7654 32".into())]
        );
        assert!(
            kinds("GB82 WEST 1234 5698 7654 33")
                .iter()
                .all(|(k, _)| *k != "iban")
        );
        assert_eq!(
            kinds("my SSN is 123-45-6789"),
            vec![("ssn", "123-45-6789".into())]
        );
        assert!(kinds("ref 666-45-6789").iter().all(|(k, _)| *k != "ssn"));
        assert_eq!(
            kinds("from 192.168.10.1 today"),
            vec![("ip_address", "192.168.10.1".into())]
        );
        assert!(kinds("version 1.2.3.400").is_empty());
        assert_eq!(
            kinds("via 2001:db8::8a2e:370:7334 now"),
            vec![("ip_address", "2001:db8::8a2e:370:7334".into())]
        );
    }

    #[test]
    fn context_decides() {
        assert_eq!(
            kinds("mail me at jane.doe@example.co.uk"),
            vec![("email", "jane.doe@example.co.uk".into())]
        );
        assert_eq!(
            kinds("Call +44 20 7946 0958 now"),
            vec![("phone", "+44 20 7946 0958".into())]
        );
        assert_eq!(kinds("phone: 84 23 30"), vec![("phone", "84 23 30".into())]);
        assert!(kinds("in 1984 we sold 2000 units").is_empty());
        assert_eq!(
            kinds("She was born on 3/29/1982."),
            vec![("date_of_birth", "3/29/1982".into())]
        );
        assert!(kinds("The meeting is on 3/29/1982.").is_empty());
        assert_eq!(
            kinds("I live at 1121 New Creek Road, Ohatchee AL 36271"),
            vec![("address", "1121 New Creek Road, Ohatchee AL 36271".into())]
        );
        assert_eq!(
            kinds("Please call me. My name is Marie Hamanová"),
            vec![("person", "Marie Hamanová".into())]
        );
        assert_eq!(
            kinds("Can I speak to Mr. Ramos?"),
            vec![("person", "Ramos".into())]
        );
        assert!(kinds("Please call the bank.").is_empty());
        assert!(kinds("I flew to Paris.").is_empty());
    }
}
