//! End-to-end tests of the `keel` binary on fixtures it generates and on the real datasets from the asset
//! cache (`scripts/fetch-assets.sh` puts them there; `scripts/test.sh` runs it first).

mod audit;
mod bad_input;
mod closed_loop;
mod guard;
mod guard_encoder;
mod hostile;
mod import;
mod multiclass;
mod newcomer;
mod quickstart;
mod rag;
mod registry;
mod regression;
mod runs;
mod scaleout;
mod serve;
mod validate;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn keel(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env("KEEL_HOME", home)
        .env("KEEL_CACHE", cache_dir())
        .env_remove("KEEL_FAILPOINT")
        .output()
        .expect("run keel")
}

/// `keel predict --model MODEL --input INPUT --output OUTPUT` plus `extra` flags.
pub fn predict(
    home: &Path,
    model: &str,
    input: &Path,
    output: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "predict",
        "--model",
        model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    keel(home, &args)
}

pub fn stdout_json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Starts `keel serve --no-auth` on a free port with `args`, waits until it listens; killed on drop.
pub struct Served {
    pub child: std::process::Child,
    pub port: u16,
}

impl Served {
    /// Stops the server as an operator would (SIGTERM): it drains, flushes its monitoring windows and exits 0.
    pub fn stop(mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(term.success());
        let status = self.child.wait().expect("wait for keel serve");
        assert!(status.success(), "keel serve exited with {status:?}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(home: &Path, args: &[&str]) -> Served {
    serve_env(home, args, &[])
}

/// [`serve`] with extra environment variables. The server binds port 0 and reports the port it got on
/// stdout (`listening on http://ADDR`), so no two tests can race for one port.
pub fn serve_env(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--port", "0", "--no-auth"])
        .args(args)
        .envs(env.iter().copied())
        .env("KEEL_HOME", home)
        .env("KEEL_CACHE", cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start keel serve");
    match keel_testkit::bound_port(&mut child) {
        Some(port) => Served { child, port },
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("keel serve exited before it reported its address");
        }
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn cache_dir() -> PathBuf {
    match std::env::var("KEEL_CACHE") {
        Ok(c) if !c.is_empty() => PathBuf::from(c),
        _ => PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/keel"),
    }
}

/// A real dataset file from the asset cache. Fails loudly when the cache was not populated.
pub fn asset(name: &str) -> PathBuf {
    let p = cache_dir().join("nannyml-0.13.1").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh first",
        p.display()
    );
    p
}

/// A small binary-classification CSV: numeric x, categorical c, binary y that depends on both.
pub fn fixture_csv(dir: &Path, name: &str, rows: usize) -> PathBuf {
    let mut s = String::from("id,x,c,y\n");
    for i in 0..rows {
        let x = (i * 37 % 101) as f64 / 10.0;
        let c = ["red", "green", "blue"][i % 3];
        let y =
            u8::from(x + if c == "red" { 3.0 } else { 0.0 } + ((i * 13) % 7) as f64 * 0.5 > 7.0);
        s.push_str(&format!("{i},{x},{c},{y}\n"));
    }
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p
}

pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Trains a small model from the fixture into `home` and returns the fixture path.
pub fn seed_registry(home: &Path, dir: &Path) -> PathBuf {
    let data = fixture_csv(dir, "seed.csv", 400);
    let o = keel(
        home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y",
            "--name",
            "seed",
            "--trees",
            "20",
            "--alias",
            "champion",
            "--json",
        ],
    );
    assert!(o.status.success(), "seed training failed: {}", stderr(&o));
    data
}

/// What the registry holds, for before/after comparisons.
pub fn registry_snapshot(home: &Path) -> (serde_json::Value, Vec<String>) {
    let o = keel(home, &["models", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut models = stdout_json(&o);
    for m in models["models"].as_array_mut().unwrap() {
        m.as_object_mut().unwrap().remove("card");
    }
    let mut files = Vec::new();
    let art = home.join("artifacts");
    if art.exists() {
        for e in walk(&art) {
            files.push(e.strip_prefix(home).unwrap().display().to_string());
        }
    }
    files.sort();
    (models, files)
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out
}
