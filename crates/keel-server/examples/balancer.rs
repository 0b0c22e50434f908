//! A loopback TCP balancer for the scale-out bench (bench/scaleout.sh), standing in for a Kubernetes Service:
//! each new client connection goes to the next backend in turn; a backend that refuses the connection is
//! skipped (and retried later), so killing a replica fails only the connections that were on it.
//!
//! Usage: balancer LISTEN_PORT BACKEND_PORT[,BACKEND_PORT…] [CONTROL_FILE]
//! With CONTROL_FILE, the backend list is re-read from it (one comma-separated line) whenever it changes, so
//! the bench can run 1, 2 or 3 replicas behind one address.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::RwLock;

fn parse(list: &str) -> Vec<u16> {
    list.trim()
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: balancer LISTEN_PORT BACKEND_PORT[,BACKEND_PORT…] [CONTROL_FILE]");
        std::process::exit(2);
    }
    let backends = Arc::new(RwLock::new(parse(&args[2])));
    if let Some(control) = args.get(3).cloned() {
        let backends = backends.clone();
        tokio::spawn(async move {
            let mut last = String::new();
            loop {
                if let Ok(s) = tokio::fs::read_to_string(&control).await
                    && s != last
                {
                    let list = parse(&s);
                    if !list.is_empty() {
                        eprintln!("balancer: backends {list:?}");
                        *backends.write().await = list;
                    }
                    last = s;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
    }
    let listener = TcpListener::bind(("127.0.0.1", args[1].parse::<u16>().expect("port")))
        .await
        .expect("bind");
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let backends = backends.clone();
        let next = next.clone();
        tokio::spawn(async move {
            let list = backends.read().await.clone();
            for _ in 0..list.len() {
                let port = list[next.fetch_add(1, Ordering::Relaxed) % list.len()];
                if let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
            }
        });
    }
}
