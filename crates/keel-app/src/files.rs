//! Local files the application writes next to the registry: model cards. Every write is atomic (temporary
//! file, fsync, rename), so a crash never leaves a half-written file where a reader looks.

use crate::{Error, Result};
use keel_ml::card::ModelCard;
use std::path::{Path, PathBuf};

/// Writes `cards/NAME/vN.html` and `.json` under the home, atomically; returns the HTML path.
pub fn write_card_files(home: &Path, card: &ModelCard) -> Result<PathBuf> {
    let dir = home.join("cards").join(&card.model);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let html = dir.join(format!("v{}.html", card.version));
    write_atomic(&html, keel_ml::card::render_html(card).as_bytes())?;
    write_atomic(
        &dir.join(format!("v{}.json", card.version)),
        serde_json::to_string_pretty(card)
            .map_err(|e| Error::Internal(format!("serialising a model card: {e}")))?
            .as_bytes(),
    )?;
    Ok(std::fs::canonicalize(&html).unwrap_or(html))
}

/// Writes the card of a training recorded as a run only (`runs/ID/card.html` and `card.json` under the
/// home). Returns the HTML's path.
pub fn write_run_card(home: &Path, run_id: &str, card: &ModelCard) -> Result<PathBuf> {
    let dir = home.join("runs").join(run_id);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let html = dir.join("card.html");
    write_atomic(&html, keel_ml::card::render_html(card).as_bytes())?;
    write_atomic(
        &dir.join("card.json"),
        serde_json::to_string_pretty(card)
            .map_err(|e| Error::Internal(format!("serialising a model card: {e}")))?
            .as_bytes(),
    )?;
    Ok(std::fs::canonicalize(&html).unwrap_or(html))
}

/// Temporary file (`.NAME.tmp-PID` next to it), fsync, rename. Leftovers of writers that were killed
/// mid-write (their process is gone) are removed first, so a crash never leaves a `.tmp` file for good.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    sweep_stale_tmp(dir);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes `.*.tmp-PID` files in `dir` whose writer process no longer exists.
fn sweep_stale_tmp(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
