//! Shared test fixtures. Expensive ones are built once per run and shared across test processes (nextest
//! runs each test in its own process): the guard model is trained on a small committed sample and kept under
//! `target/keel-testkit/`, keyed by the sample's and the training code's hash.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// The asset cache (`$KEEL_CACHE`, else `~/.cache/keel`).
pub fn cache_dir() -> PathBuf {
    match std::env::var("KEEL_CACHE") {
        Ok(c) if !c.is_empty() => PathBuf::from(c),
        _ => PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/keel"),
    }
}

/// A file of the asset cache; fails loudly when `scripts/fetch-assets.sh` has not fetched it.
pub fn asset(rel: &str) -> PathBuf {
    let p = cache_dir().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh first",
        p.display()
    );
    p
}

/// The committed S-Labs sample: (train, validation) CSVs of `text,label`.
pub fn s_labs_sample() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/s-labs-sample");
    (dir.join("train.csv"), dir.join("validation.csv"))
}

/// The guard model trained on the committed sample, as bytes: built by the first test process that asks,
/// written atomically under `target/keel-testkit/`, and read back by every later one in this build.
pub fn guard_model_bytes() -> Vec<u8> {
    let (train, val) = s_labs_sample();
    let key = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for p in [&train, &val] {
            h.update(std::fs::read(p).expect("read the sample"));
        }
        // A rebuilt test binary (new training code) gets a new model: its size and modification time.
        let exe = std::fs::metadata(std::env::current_exe().expect("test binary")).expect("stat");
        h.update(exe.len().to_le_bytes());
        h.update(format!("{:?}", exe.modified().ok()).as_bytes());
        hex::encode(&h.finalize()[..8])
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/keel-testkit");
    let path = dir.join(format!("guard-{key}.bin"));
    if let Ok(b) = std::fs::read(&path) {
        return b;
    }
    let train = keel_guard::read_labelled(&train).expect("read the sample");
    let val = keel_guard::read_labelled(&val).expect("read the sample");
    let words = std::fs::read_to_string(asset("wamerican/american-english")).expect("word list");
    let docs: Vec<String> = (0..400)
        .map(|i| {
            format!("The function returns a new list of {i} items and leaves the original sequence unchanged.")
        })
        .collect();
    let (model, _) = keel_guard::train_model(&train, &val, &docs, &words, &Default::default())
        .expect("train the guard model");
    let bytes = model.to_bytes();
    std::fs::create_dir_all(&dir).expect("create target/keel-testkit");
    let tmp = dir.join(format!("guard-{key}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &bytes).expect("write the guard model");
    std::fs::rename(&tmp, &path).expect("publish the guard model");
    bytes
}

/// Polls `check` every 20 ms until it returns `Some`, or panics naming `what` after 30 s: for effects that
/// land after a response (an audit record written after it, a reference re-read on refresh).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics naming `what` after `timeout`: the blocking
/// twin of [`eventually`] for tests that drive processes (a server becoming ready).
pub fn poll_until<T>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Reads a starting `keel serve`'s stdout until it reports `listening on http://HOST:PORT` (it binds port 0),
/// then drains the rest on a thread so the server never blocks on a full pipe. `None` if it exits first.
pub fn bound_port(child: &mut std::process::Child) -> Option<u16> {
    use std::io::BufRead;
    let out = child.stdout.take()?;
    let mut lines = std::io::BufReader::new(out).lines();
    let port = lines.by_ref().map_while(Result::ok).find_map(|l| {
        l.strip_prefix("listening on http://")
            .and_then(|a| a.rsplit(':').next()?.parse().ok())
    })?;
    std::thread::spawn(move || lines.for_each(drop));
    Some(port)
}
