//! Language detection for the detectors that depend on language (person names), with `whatlang` (trigram
//! profiles of 69 languages).
//!
//! Supported for person names: English only. The name detector judges capitalised words against an English
//! lexicon, so in German (where every noun is capitalised) or any other language it would report ordinary
//! words as names. A text whose language is detected reliably as another language gets no person-name
//! findings and a note saying so; structured PII (email, phone, card, IBAN, SSN, IP address, dates of birth,
//! addresses with numbers) is detected in every language.

use serde::Serialize;

/// Languages whose person names are detected (ISO 639-3).
pub const NAME_LANGUAGES: &[&str] = &["eng"];

/// A detected language.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Language {
    /// ISO 639-3 code (`eng`, `deu`, `fra`, …).
    pub code: &'static str,
    /// English name of the language.
    pub name: &'static str,
    pub confidence: f64,
    /// `whatlang`'s own judgement that the guess is safe (short texts rarely are).
    pub reliable: bool,
}

/// Detects the language of `text` (its first 600 characters: enough to tell, and the cost stays bounded);
/// `None` when there is too little text.
pub fn detect(text: &str) -> Option<Language> {
    let head: String = text.chars().take(600).collect();
    let info = whatlang::detect(&head)?;
    Some(Language {
        code: info.lang().code(),
        name: info.lang().eng_name(),
        confidence: info.confidence(),
        reliable: info.is_reliable(),
    })
}

/// Whether person names should be looked for in `text`: yes unless it is reliably another language.
pub fn names_supported(lang: Option<&Language>) -> bool {
    match lang {
        Some(l) if l.reliable => NAME_LANGUAGES.contains(&l.code),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_languages_it_is_asked_about() {
        let de = detect("Die Rechnung für den Auftrag liegt im Ordner Buchhaltung, bitte prüfen Sie die Beträge.").unwrap();
        assert_eq!(de.code, "deu");
        assert!(!names_supported(Some(&de)));
        let en =
            detect("Please send the invoice for the order to my manager before Friday.").unwrap();
        assert_eq!(en.code, "eng");
        assert!(names_supported(Some(&en)));
        // Too short to be sure: names are still checked.
        assert!(names_supported(detect("Hi Bob").as_ref()));
    }
}
