//! Sections of `keel.toml` that use cases read outside the server: `[serve.llm]`, `[serve.guard]` and
//! `[serve.rollout]`. The server reads the whole `[serve]` table (and refuses unknown keys there); a use case
//! reads only its own section, strictly, so the CLI and the server agree on one file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::guard::GuardConfig;
use crate::rag::LlmConfig;

/// The configuration file to read: `explicit`, else `$KEEL_CONFIG`, else `./keel.toml` when there is one, else
/// none.
pub fn discover(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("KEEL_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| {
            Path::new("keel.toml")
                .exists()
                .then(|| PathBuf::from("keel.toml"))
        })
}

/// `[serve.{key}]` of a TOML text (its defaults when the file has no such table). `source` names the file in
/// errors, which also give the key's path.
pub fn section<T: DeserializeOwned + Default>(text: &str, source: &str, key: &str) -> Result<T> {
    let v: toml::Table =
        toml::from_str(text).map_err(|e| Error::input(format!("{source}: {e}")))?;
    let Some(serve) = v.get("serve") else {
        return Ok(T::default());
    };
    let Some(t) = serve.get(key) else {
        return Ok(T::default());
    };
    t.clone()
        .try_into()
        .map_err(|e| Error::input(format!("{source}: [serve.{key}]: {e}")))
}

/// `[serve.{key}]` of the configuration file `discover(path)` finds (the defaults without one).
pub fn read_section<T: DeserializeOwned + Default>(path: Option<&Path>, key: &str) -> Result<T> {
    match discover(path) {
        None => Ok(T::default()),
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
            section(&text, &p.display().to_string(), key)
        }
    }
}

/// `[store]`: where state lives (database and artifact URLs, pool size, S3 endpoint); the defaults without a
/// file or a table. Secrets never come from here: S3 credentials are read from the environment.
pub fn store(path: Option<&Path>) -> Result<keel_store::StoreConfig> {
    let Some(p) = discover(path) else {
        return Ok(keel_store::StoreConfig::default());
    };
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let v: toml::Table =
        toml::from_str(&text).map_err(|e| Error::input(format!("{}: {e}", p.display())))?;
    match v.get("store") {
        None => Ok(keel_store::StoreConfig::default()),
        Some(t) => t
            .clone()
            .try_into()
            .map_err(|e| Error::input(format!("{}: [store]: {e}", p.display()))),
    }
}

/// `[serve.llm]`: local model paths, the remote chat and embeddings endpoints.
pub fn llm(path: Option<&Path>) -> Result<LlmConfig> {
    read_section(path, "llm")
}

/// `[serve.guard]`: the guard model, policies per route and per collection.
pub fn guard(path: Option<&Path>) -> Result<GuardConfig> {
    read_section(path, "guard")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_reads_strictly_and_names_where_it_is_wrong() {
        let g: GuardConfig = section(
            "[serve]\nport = 1\n[serve.guard]\nenabled = true\n",
            "k.toml",
            "guard",
        )
        .unwrap();
        assert!(g.enabled);
        let none: GuardConfig = section("[other]\nx = 1\n", "k.toml", "guard").unwrap();
        assert_eq!(none, GuardConfig::default());
        let e = section::<GuardConfig>("[serve.guard]\nenabeld = true\n", "k.toml", "guard")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("k.toml") && e.contains("[serve.guard]") && e.contains("enabeld"),
            "{e}"
        );
    }
}
