//! The dependency rule of ARCHITECTURE.md, read from `cargo metadata` so the picture cannot drift:
//! arrows point down the layers; domain crates know nothing of async runtimes, HTTP, databases or flags; the
//! application layer and below know nothing of HTTP or flags; only the binary knows the server, and only to
//! start it.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each workspace crate's layer; a crate may depend only on crates of lower layers.
const LAYERS: &[(&str, u32)] = &[
    ("keel-core", 0),
    ("keel-data", 1),
    ("keel-ml", 1),
    ("keel-monitor", 1),
    ("keel-rag", 1),
    ("keel-guard", 2),
    ("keel-store", 2),
    ("keel-engine", 3),
    ("keel-app", 4),
    ("keel-server", 5),
    ("keel-cli", 6),
    // Test fixtures: a dev-dependency of the front ends' tests, never a normal dependency of anything.
    ("keel-testkit", 7),
];

/// Pure crates: no I/O runtime, HTTP, database or flag parsing anywhere in their dependency tree.
const DOMAIN: &[&str] = &[
    "keel-core",
    "keel-data",
    "keel-ml",
    "keel-monitor",
    "keel-rag",
    "keel-guard",
];
const NOT_IN_DOMAIN: &[&str] = &["tokio", "axum", "hyper", "sqlx", "reqwest", "clap", "tower"];

/// Below the front ends: no HTTP server and no flags anywhere in the tree, and no HTTP server plumbing as a
/// direct dependency (an HTTP client, reqwest, is allowed: the app layer calls OpenAI-compatible endpoints,
/// and reqwest itself uses hyper and tower underneath).
const BELOW_FRONT_ENDS: &[&str] = &["keel-store", "keel-engine", "keel-app"];
const NOT_BELOW_FRONT_ENDS: &[&str] = &["axum", "clap", "utoipa"];
const NOT_DIRECTLY_BELOW_FRONT_ENDS: &[&str] = &["hyper", "hyper-util", "tower", "tower-http"];

/// keel-cli files allowed to name keel-server: starting it (`keel serve`, `keel demo loop`) and printing its
/// OpenAPI document.
const CLI_SERVER_USERS: &[&str] = &["cmd/serve.rs", "cmd/demo.rs", "cmd/mod.rs"];

struct Graph {
    /// Package id → name.
    names: BTreeMap<String, String>,
    /// Package id → normal (non-dev, non-build) dependency ids.
    deps: BTreeMap<String, Vec<String>>,
    members: BTreeSet<String>,
}

fn metadata() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The resolve graph for this platform (other targets' crates, e.g. Android's, are not needed).
    let host = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        })
        .unwrap_or_else(|| "x86_64-unknown-linux-gnu".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let members = v["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let deps = v["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let normal = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().unwrap().to_string())
                .collect();
            (n["id"].as_str().unwrap().to_string(), normal)
        })
        .collect();
    Graph {
        names,
        deps,
        members,
    }
}

impl Graph {
    fn id(&self, name: &str) -> String {
        self.members
            .iter()
            .find(|id| self.names[*id] == name)
            .unwrap_or_else(|| panic!("{name} is not a workspace member"))
            .clone()
    }

    /// Every crate `name` depends on at run time, directly or not.
    fn reachable(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![self.id(name)];
        while let Some(id) = stack.pop() {
            for d in self.deps.get(&id).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen.iter().map(|id| self.names[id].clone()).collect()
    }
}

/// The violations of the rule in this workspace, one line each.
fn violations(g: &Graph) -> Vec<String> {
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut out = Vec::new();
    for id in &g.members {
        let name = &g.names[id];
        let Some(&own) = layer.get(name.as_str()) else {
            out.push(format!(
                "{name} has no layer in the rule (add it to LAYERS and ARCHITECTURE.md)"
            ));
            continue;
        };
        for d in &g.deps[id] {
            let dn = &g.names[d];
            if let Some(&theirs) = layer.get(dn.as_str())
                && theirs >= own
            {
                out.push(format!(
                    "{name} (layer {own}) depends on {dn} (layer {theirs}): arrows must point down"
                ));
            }
        }
    }
    for c in DOMAIN {
        let r = g.reachable(c);
        for bad in NOT_IN_DOMAIN {
            if r.contains(*bad) {
                out.push(format!("domain crate {c} depends on {bad}"));
            }
        }
    }
    for c in BELOW_FRONT_ENDS {
        let r = g.reachable(c);
        for bad in NOT_BELOW_FRONT_ENDS {
            if r.contains(*bad) {
                out.push(format!("{c} (below the front ends) depends on {bad}"));
            }
        }
        let id = g.id(c);
        for bad in NOT_DIRECTLY_BELOW_FRONT_ENDS {
            if g.deps[&id].iter().any(|d| g.names[d] == *bad) {
                out.push(format!(
                    "{c} (below the front ends) depends directly on {bad}"
                ));
            }
        }
    }
    for id in &g.members {
        let name = &g.names[id];
        if name != "keel-cli" && g.deps[id].iter().any(|d| g.names[d] == "keel-server") {
            out.push(format!(
                "{name} depends on keel-server; only the binary may"
            ));
        }
    }
    out
}

/// Files of keel-cli (relative to its `src/`) that name `keel_server` outside the allowed ones.
fn cli_server_uses() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keel-cli/src");
    let mut out = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap();
            if text.contains("keel_server") && !CLI_SERVER_USERS.contains(&rel.as_str()) {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_workspace_keeps_the_dependency_rule() {
    let v = violations(&metadata());
    assert!(
        v.is_empty(),
        "dependency rule broken:\n  {}",
        v.join("\n  ")
    );
}

#[test]
fn the_cli_names_the_server_only_to_start_it() {
    let files = cli_server_uses();
    assert!(
        files.is_empty(),
        "keel-cli uses keel-server for more than starting it (move the use case to keel-app): {files:?}"
    );
}

/// The checker itself catches a broken rule: an upward arrow, a domain crate on tokio, a second user of the
/// server.
#[test]
fn the_rule_check_fails_when_the_rule_is_broken() {
    let mut g = metadata();
    let (ml, app, data) = (g.id("keel-ml"), g.id("keel-app"), g.id("keel-data"));
    let tokio = g
        .names
        .iter()
        .find(|(_, n)| *n == "tokio")
        .map(|(id, _)| id.clone())
        .unwrap();
    let server = g.id("keel-server");
    g.deps.get_mut(&ml).unwrap().push(app.clone());
    g.deps.get_mut(&data).unwrap().push(tokio);
    g.deps.get_mut(&app).unwrap().push(server);
    let v = violations(&g);
    assert!(
        v.iter()
            .any(|l| l.starts_with("keel-ml (layer 1) depends on keel-app")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|l| l == "domain crate keel-data depends on tokio"),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|l| l == "keel-app depends on keel-server; only the binary may"),
        "{v:?}"
    );
}
