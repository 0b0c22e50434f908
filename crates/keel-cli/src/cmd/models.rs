//! `keel init` and `keel models list | show | card`.

use anyhow::{Context, Result};
use keel_ml::card::ModelCard;
use keel_store::{Selector, Store};
use std::path::Path;

use super::block_on;
use super::train::write_card_files;
use crate::cli::{AliasArgs, CardArgs, InitArgs, ListArgs, RollbackArgs, ShowArgs};
use crate::output::print_json;

pub fn init(home: &Path, a: &InitArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let home = std::fs::canonicalize(store.home()).unwrap_or_else(|_| home.to_path_buf());
    let (registry, artifacts) = store.locations();
    let canon = |p: &str| {
        std::fs::canonicalize(p).map_or_else(|_| p.to_string(), |c| c.display().to_string())
    };
    let (registry, artifacts) = (canon(registry), canon(artifacts));
    block_on(store.close());
    if a.json {
        print_json(
            &serde_json::json!({"home": home, "registry": registry, "artifacts": artifacts}),
        );
    } else {
        println!("Keel home ready at {}", home.display());
        println!("  registry:  {registry}");
        println!("  artifacts: {artifacts}");
        println!("Next: keel quickstart, or keel train --help");
    }
    Ok(0)
}

/// `keel migrate`: applies the missing schema migrations of the configured database.
pub fn migrate(home: &Path, a: &InitArgs) -> Result<i32> {
    let config = keel_store::StoreConfig::current()?;
    let report = block_on(Store::migrate(home, &config))?;
    if a.json {
        print_json(&serde_json::json!({
            "backend": report.backend, "from": report.from, "to": report.to, "applied": report.applied(),
        }));
    } else if report.applied() {
        println!(
            "migrated the {} schema from version {} to {}",
            report.backend, report.from, report.to
        );
    } else {
        println!(
            "the {} schema is already at version {} (nothing to do)",
            report.backend, report.to
        );
    }
    Ok(0)
}

pub fn list(home: &Path, a: &ListArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let models = block_on(store.list())?;
    if a.json {
        print_json(&serde_json::json!({"models": models}));
    } else if models.is_empty() {
        println!("no models registered yet (try keel quickstart)");
    } else {
        println!(
            "{:<24} {:>8} {:>6} {:<28} {:<8} {:>9}  champion created",
            "model", "champion", "latest", "aliases", "kind", "auc/rmse"
        );
        for m in &models {
            let champion = m.champion.as_ref();
            let metric = champion
                .and_then(|c| c.metrics.get("auc").or_else(|| c.metrics.get("rmse")))
                .and_then(|v| v.as_f64());
            let aliases: Vec<String> = m.aliases.iter().map(|(a, v)| format!("{a}→{v}")).collect();
            println!(
                "{:<24} {:>8} {:>6} {:<28} {:<8} {:>9}  {}",
                m.model,
                champion.map_or("–".into(), |c| format!("v{}", c.version)),
                format!("v{}", m.latest_version),
                if aliases.is_empty() {
                    "–".into()
                } else {
                    aliases.join(",")
                },
                champion.map_or(m.kind.as_str(), |c| c.kind.as_str()),
                metric.map_or("–".into(), |v| format!("{v:.4}")),
                champion.map_or("–", |c| c.created_at.as_str())
            );
        }
        if models.iter().any(|m| m.champion.is_none()) {
            println!(
                "(– : no champion; a bare name serves NAME@champion, so serve such a model by version or set one with keel models alias NAME champion V)"
            );
        }
    }
    Ok(0)
}

pub fn show(home: &Path, a: &ShowArgs) -> Result<i32> {
    let (name, sel) = Selector::parse(&a.model)?;
    let store = block_on(Store::open(home))?;
    let v = block_on(store.get(&name, &sel))?;
    let versions = block_on(store.versions(&name))?;
    if a.json {
        let mut out = serde_json::to_value(&v)?;
        out["versions"] = versions.iter().map(|x| serde_json::json!({"version": x.version, "aliases": x.aliases, "created_at": x.created_at})).collect();
        print_json(&out);
    } else {
        println!("{}@{} ({}, {})", v.model, v.version, v.kind, v.objective);
        println!(
            "  aliases:      {}",
            if v.aliases.is_empty() {
                "–".into()
            } else {
                v.aliases.join(", ")
            }
        );
        println!("  created:      {} by {}", v.created_at, v.created_by);
        println!("  dataset:      {}", v.dataset_hash);
        println!("  code:         {}", v.code_version);
        println!(
            "  artifact:     {} (sha256 {})",
            v.artifact_uri, v.artifact_sha256
        );
        if let Some(m) = v.metrics.as_object() {
            for (k, x) in m {
                println!(
                    "  {k:<13} {}",
                    x.as_f64().map_or("–".into(), |f| format!("{f:.4}"))
                );
            }
        }
        println!(
            "  versions:     {}",
            versions
                .iter()
                .map(|x| x.version.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(0)
}

pub fn card(home: &Path, a: &CardArgs) -> Result<i32> {
    let (name, sel) = Selector::parse(&a.model)?;
    let store = block_on(Store::open(home))?;
    let v = block_on(store.get(&name, &sel))?;
    if v.kind == keel_app::guard::GUARD_KIND {
        let html = match &a.out {
            Some(out) => {
                super::train::write_atomic(
                    out,
                    super::guard::card_html(&v.model, v.version, &v.card).as_bytes(),
                )?;
                out.clone()
            }
            None => super::guard::write_card(home, &v.model, v.version, &v.card)?,
        };
        if a.json {
            let mut c = v.card.clone();
            c["card_html"] = serde_json::json!(html);
            print_json(&c);
        } else {
            println!("{}", html.display());
        }
        return Ok(0);
    }
    let card: ModelCard =
        serde_json::from_value(v.card.clone()).context("reading the stored model card")?;
    let html = match &a.out {
        Some(out) => {
            super::train::write_atomic(out, keel_ml::card::render_html(&card).as_bytes())?;
            out.clone()
        }
        None => write_card_files(home, &card)?,
    };
    if a.json {
        let mut c = serde_json::to_value(&card)?;
        c["card_html"] = serde_json::json!(html);
        print_json(&c);
    } else {
        println!("{}", html.display());
    }
    Ok(0)
}

pub fn alias(home: &Path, a: &AliasArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let before = block_on(store.set_alias(&a.model, &a.alias, a.version, &super::train::actor()))?;
    report_move(&a.model, &a.alias, before, a.version, a.json);
    Ok(0)
}

/// The version an alias pointed at before its latest move, from the audit log.
pub fn rollback(home: &Path, a: &RollbackArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let (now, previous) = block_on(rollback_alias(
        &store,
        &a.model,
        &a.alias,
        &super::train::actor(),
    ))?;
    report_move(&a.model, &a.alias, now, previous, a.json);
    Ok(0)
}

/// Moves `model@alias` back to the version it pointed at before its latest move (promotions included), in
/// one audited alias move. Returns (version before the rollback, version after).
pub async fn rollback_alias(
    store: &Store,
    model: &str,
    alias: &str,
    actor: &str,
) -> Result<(Option<i64>, i64)> {
    let m = keel_app::registry::rollback(store, model, alias, actor).await?;
    Ok((m.before, m.after))
}

fn report_move(model: &str, alias: &str, before: Option<i64>, after: i64, json: bool) {
    if json {
        print_json(
            &serde_json::json!({"model": model, "alias": alias, "before": before, "version": after}),
        );
    } else {
        match before {
            Some(b) => println!("{model}@{alias}: v{b} -> v{after}"),
            None => println!("{model}@{alias}: -> v{after}"),
        }
    }
}

/// `keel models import`: flags → a typed [`keel_app::import::ImportSpec`], the import use case with a
/// progress display, and the outcome for a person or as JSON.
pub fn import(home: &Path, a: &crate::cli::ImportArgs) -> Result<i32> {
    if let Some(c) = a.canary
        && !(c > 0.0 && c <= 100.0)
    {
        return Err(super::input_error(format!(
            "--canary {c} must be a percentage in (0, 100]"
        )));
    }
    let absolute = |p: &Path| std::path::absolute(p).with_context(|| p.display().to_string());
    let spec = keel_app::import::ImportSpec {
        file: absolute(&a.file)?,
        name: a.name.clone(),
        format: keel_ml::import::Format::parse(&a.format)?,
        reference: a.reference.as_deref().map(absolute).transpose()?,
        target: a.target.clone(),
        feature_names: a.features.clone(),
        sensitive: a.sensitive.clone(),
        slices: a.slice.clone(),
        threshold: a.threshold,
        aliases: a.alias.clone(),
        champion_if_none: false,
        description: a.description.clone(),
        gate: match &a.holdout {
            Some(h) => Some(keel_app::retrain::GateSpec {
                holdout: absolute(h)?,
                canary: a.canary.map(|c| c / 100.0),
                shadow: a.shadow,
                gate: Default::default(),
            }),
            None => None,
        },
    };
    let ui = super::train::TerminalProgress::new(0, a.json);
    let out = block_on(async {
        let store = Store::open(home).await?;
        let r = keel_app::import::import(&store, spec, &super::train::actor(), ui.hook()).await;
        store.close().await;
        anyhow::Ok(r?)
    });
    ui.finish();
    let out = out?;
    if a.json {
        print_json(&out);
        return Ok(0);
    }
    let s = &out.source;
    println!(
        "imported {}@{} from {} {} ({} trees, objective {}){}",
        out.model,
        out.version,
        s.library,
        s.format_version.as_deref().unwrap_or(""),
        s.trees,
        s.objective,
        if out.aliases.is_empty() {
            String::new()
        } else {
            format!("; aliases: {}", out.aliases.join(", "))
        }
    );
    println!("  features: {}", out.features.join(", "));
    println!("  file sha256: {}", s.sha256);
    if out.evaluated_rows > 0 {
        let metrics: Vec<String> = out
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        println!(
            "  on {} reference rows: {}",
            out.evaluated_rows,
            metrics.join(", ")
        );
    }
    for m in &out.missing {
        println!("  missing (no reference data): {m}");
    }
    println!("  card: {}", out.card_html.display());
    if let Some(g) = &out.gate {
        println!("{}", g.message);
        for r in &g.gate.reasons {
            println!("  - {r}");
        }
    }
    Ok(0)
}
