//! Hostile requests against a real `keel serve` on loopback: each is refused with a 4xx, bounded in time and in
//! the server's memory, and the server keeps answering.

use crate::*;
use std::io::{Read, Write};
use std::net::TcpStream;

/// One request with a content type; (status, body).
fn send(addr: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).to_string();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// A CSV body whose header names 2,000 or 100,000 columns (the model has three) once made arrow reserve
/// columns × 65,536 × 8 bytes (52 GB: the process aborted) on the reactor. Now the header is checked first:
/// 422 naming the unknown columns, no allocation proportional to them, `/healthz` unaffected.
#[test]
fn wide_csv_bodies_are_refused_before_they_cost_memory() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    seed_registry(&home, dir.path());
    let server = serve(&home, &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    // Warm up: the model is loaded and one request served.
    let (st, body) = send(
        &addr,
        "/v1/models/seed/predict",
        "text/csv",
        b"x,c\n1.5,red\n",
    );
    assert_eq!(st, 200, "{body}");
    let before = peak_rss(server.child.id());
    for cols in [2_000usize, 100_000] {
        let mut csv = (0..cols)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",");
        csv.push('\n');
        csv.push_str(&vec!["1"; cols].join(","));
        csv.push('\n');
        let (st, body) = send(&addr, "/v1/models/seed/predict", "text/csv", csv.as_bytes());
        assert_eq!(st, 422, "{cols} columns: {}", &body[..body.len().min(300)]);
        assert!(body.contains("unknown_field"), "{}", &body[..300]);
        let (st, _) = crate::serve::http(&addr, "GET", "/healthz", None, "");
        assert_eq!(st, 200);
    }
    let grown = peak_rss(server.child.id()).saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "the server's peak memory grew by {} MiB",
        grown >> 20
    );
}

/// Slow-header clients (one byte every 300 ms) and idle ones are disconnected after the header-read timeout
/// instead of holding their connection (and a file descriptor) for as long as they like, and a connection cap
/// keeps the rest waiting in the backlog; legitimate requests keep working throughout.
#[test]
fn slow_and_idle_clients_are_disconnected_and_connections_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    seed_registry(&home, dir.path());
    let server = serve(
        &home,
        &[
            "--header-read-timeout-ms",
            "1000",
            "--max-connections",
            "64",
        ],
    );
    let addr = format!("127.0.0.1:{}", server.port);
    // Closed by the server: a read returns end of stream (or an error) before the deadline.
    let closed_within = |s: &mut TcpStream, limit: std::time::Duration| -> bool {
        let start = std::time::Instant::now();
        s.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 256];
        while start.elapsed() < limit {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    };
    // Idle: connects and sends nothing.
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    // Slow: part of a request head, then nothing more (a one-byte-at-a-time client looks the same to the
    // server: the deadline counts from the connection, not from the last byte).
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: aaaa")
        .unwrap();
    assert!(
        closed_within(&mut slow, std::time::Duration::from_secs(5)),
        "a slow-header client kept its connection"
    );
    for s in &mut idle {
        assert!(
            closed_within(s, std::time::Duration::from_secs(5)),
            "an idle connection was kept"
        );
    }
    // More clients than the cap: the idle ones are reaped and every legitimate request is answered.
    let hogs: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let (st, _) = crate::serve::http(&addr, "GET", "/healthz", None, "");
    assert_eq!(st, 200);
    drop(hogs);
}

/// The job worker next to `keel serve` survives transient failures (here: its first two polls panic, as the
/// runtime's construction did when file descriptors ran out): `/healthz` reports it retrying, then running,
/// and a queued retraining job still runs.
#[test]
fn the_job_worker_survives_transient_failures_and_health_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    seed_registry(&home, dir.path());
    let data = fixture_csv(dir.path(), "more.csv", 1000);
    let holdout = fixture_csv(dir.path(), "holdout.csv", 300);
    let server = serve_env(&home, &[], &[("KEEL_PANICPOINT", "worker.poll:2")]);
    let addr = format!("127.0.0.1:{}", server.port);
    let health = || {
        let (st, body) = crate::serve::http(&addr, "GET", "/healthz", None, "");
        (
            st,
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let (st, v) = health();
        assert_eq!(st, 200, "{v}");
        let state = v["worker"]["state"].as_str().unwrap().to_string();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "running" && seen.iter().any(|s| s == "retrying") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "worker states: {seen:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = keel(
        &home,
        &[
            "retrain",
            "seed",
            "--data",
            data.to_str().unwrap(),
            "--holdout",
            holdout.to_str().unwrap(),
            "--trees",
            "10",
            "--queue",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout_json(&o)["id"].to_string();
    loop {
        let job = stdout_json(&keel(&home, &["jobs", "show", &id, "--json"]));
        if job["state"] == "succeeded" {
            break;
        }
        assert!(
            job["state"] == "queued" || job["state"] == "running",
            "{job}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the job never ran: {job}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
