//! Locating cached assets, fetching them with the embedded `scripts/fetch-assets.sh` when missing.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// The fetch script, embedded so the binary can fetch assets from any directory.
const FETCH_SCRIPT: &str = include_str!("../../../scripts/fetch-assets.sh");

/// The asset cache (`$KEEL_CACHE`, default `~/.cache/keel`).
pub fn cache_dir() -> PathBuf {
    keel_core::cache_dir()
}

/// Path of the employment reference data (2015 rows), fetching it if needed.
pub fn employment_reference(quiet: bool) -> Result<PathBuf> {
    require(
        "nannyml",
        "nannyml-0.13.1/employment_MA_reference.pq",
        quiet,
    )
}

/// `rel` under the asset cache, fetching asset `group` first when it is missing.
pub fn require(group: &str, rel: &str, quiet: bool) -> Result<PathBuf> {
    let path = cache_dir().join(rel);
    if !path.exists() {
        fetch(group, quiet)?;
    }
    if !path.exists() {
        bail!(
            "{} is still missing after fetching assets '{group}'",
            path.display()
        );
    }
    Ok(path)
}

/// Runs the embedded fetch script for one asset group.
pub fn fetch(group: &str, quiet: bool) -> Result<()> {
    if !quiet {
        eprintln!(
            "keel: fetching asset '{group}' into {}",
            cache_dir().display()
        );
    }
    let mut child = std::process::Command::new("bash")
        .arg("-s")
        .arg("--")
        .arg(group)
        .env("KEEL_CACHE", cache_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(if quiet {
            std::process::Stdio::null()
        } else {
            std::process::Stdio::inherit()
        })
        .spawn()
        .context("starting bash to fetch assets")?;
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(FETCH_SCRIPT.as_bytes())
        .context("sending the fetch script to bash")?;
    let status = child.wait().context("waiting for the asset fetch")?;
    if !status.success() {
        bail!(
            "fetching assets '{group}' failed ({status}); run scripts/fetch-assets.sh {group} to see why"
        );
    }
    Ok(())
}
