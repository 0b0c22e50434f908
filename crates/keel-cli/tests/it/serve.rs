//! `keel predict`, `keel keys` and a real `keel serve` process on loopback.

use crate::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn batch_scoring_streams_csv_and_parquet_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = seed_registry(&home, dir.path());
    let out = dir.path().join("scored.csv");
    let o = keel(
        &home,
        &[
            "predict",
            "--model",
            "seed@champion",
            "--input",
            data.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--batch-size",
            "64",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["rows"], 400);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "id,x,c,y,prediction,probability");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 400);
    assert!(rows.iter().all(|r| {
        let f: Vec<&str> = r.split(',').collect();
        let p: f64 = f[5].parse().unwrap();
        (0.0..=1.0).contains(&p) && f[4] == if p >= 0.5 { "1" } else { "0" }
    }));
    // Ids pass through in order across chunks.
    assert!(rows[399].starts_with("399,"));

    let pq = dir.path().join("scored.parquet");
    let o = keel(
        &home,
        &[
            "predict",
            "--model",
            "seed",
            "--input",
            data.to_str().unwrap(),
            "--output",
            pq.to_str().unwrap(),
            "--batch-size",
            "100",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let t = keel_data::read_table(&pq).unwrap();
    assert_eq!(t.nrows, 400);
    assert!(t.columns.iter().any(|c| c.name == "probability"));

    // A file missing a feature column fails with the column named, and leaves no output behind.
    let bad = write(dir.path(), "bad.csv", "id,c\n1,red\n");
    let out2 = dir.path().join("never.csv");
    let o = keel(
        &home,
        &[
            "predict",
            "--model",
            "seed",
            "--input",
            bad.to_str().unwrap(),
            "--output",
            out2.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'x'"), "{}", stderr(&o));
    assert!(!out2.exists());
}

/// Polls `/readyz` until it answers 200 (the champions are loaded), failing after 60 s.
pub(crate) fn wait_ready(addr: &str) {
    keel_testkit::poll_until(
        &format!("{addr} to be ready"),
        std::time::Duration::from_secs(60),
        || (http(addr, "GET", "/readyz", None, "").0 == 200).then_some(()),
    );
}

pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    http_with(addr, method, path, key, &[], body)
}

/// [`http`] with extra request headers (`name: value`).
pub(crate) fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut extra = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    for (name, value) in headers {
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn keel_serve_answers_with_keys_and_shuts_down_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    seed_registry(&home, dir.path());
    let o = keel(&home, &["keys", "create", "--role", "predictor", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = stdout_json(&o)["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("keel_"));

    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--port", "0", "--log-format", "json"])
        .env("KEEL_HOME", &home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .expect(&line)
        .to_string();
    // Ready once the champion is loaded.
    wait_ready(&addr);
    let body = r#"{"x": 5.5, "c": "red"}"#;
    let (st, b) = http(
        &addr,
        "POST",
        "/v1/models/seed@champion/predict",
        Some(&key),
        body,
    );
    assert_eq!(st, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["model"], "seed");
    assert_eq!(
        http(&addr, "POST", "/v1/models/seed/predict", None, body).0,
        401
    );

    // SIGTERM: graceful shutdown, exit 0, JSON log lines on stderr.
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let json_lines: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        json_lines
            .iter()
            .any(|l| l["message"] == "shut down cleanly"),
        "{err}"
    );
}
