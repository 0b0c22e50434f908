//! What replicas share through the database: the change counter, change notifications, leases and fencing.

use crate::{Env, contract, version};
use keel_store::{Backend, ChangeEvent, Error};

contract!(every_audited_change_moves_the_counter_that_replicas_poll);
/// An alias move on one store moves the counter another store reads; on Postgres the other store is also
/// notified, and a killed listening connection is reported so the replica reloads everything.
async fn every_audited_change_moves_the_counter_that_replicas_poll(env: Env) {
    let a = &env.store;
    let b = env.another().await;
    let mut listener = b.listen_changes("keel-listen-contract").await.unwrap();
    assert_eq!(listener.is_some(), env.backend == Backend::Postgres);
    let c0 = b.change_counter().await.unwrap();
    a.register(version("m", &[], true)).await.unwrap();
    a.register(version("m", &["x"], false)).await.unwrap();
    let c1 = b.change_counter().await.unwrap();
    assert!(c1 >= c0 + 2, "{c0} → {c1}");
    a.set_alias("m", "champion", 2, "t").await.unwrap();
    assert!(b.change_counter().await.unwrap() > c1);
    if let Some(l) = listener.as_mut() {
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), l.next())
            .await
            .expect("a notification within 10 s")
            .unwrap();
        assert_eq!(got, ChangeEvent::Changed);
        // Kill the listening connection as an operator (or a failover) would: the next event says so.
        env.raw_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'keel-listen-contract'",
        )
        .await;
        let mut saw_reconnect = false;
        for _ in 0..10 {
            match tokio::time::timeout(std::time::Duration::from_secs(10), l.next()).await {
                Ok(Ok(ChangeEvent::Reconnected)) => {
                    saw_reconnect = true;
                    break;
                }
                Ok(Ok(ChangeEvent::Changed)) => continue,
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => break,
            }
        }
        assert!(saw_reconnect, "a lost LISTEN connection must be reported");
        // And it listens again afterwards.
        a.set_alias("m", "champion", 1, "t").await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), l.next())
            .await
            .expect("a notification after the reconnect")
            .unwrap();
        assert_eq!(got, ChangeEvent::Changed);
    }
}

contract!(one_holder_at_a_time_and_a_lost_lease_stops_writes);
/// Two replicas contend for a lease: one holds it; renewals keep its token; after it expires the other takes
/// it over with a higher token (audited), and the former holder's fenced writes are refused.
async fn one_holder_at_a_time_and_a_lost_lease_stops_writes(env: Env) {
    let a = &env.store;
    let b = env.another().await;
    let la = a
        .acquire_lease("singletons", "replica-a", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        b.acquire_lease("singletons", "replica-b", 60_000)
            .await
            .unwrap()
            .is_none()
    );
    let renewed = a
        .acquire_lease("singletons", "replica-a", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.token, la.token, "a renewal keeps the token");
    let fenced_a = a.fenced(&renewed);
    fenced_a.register(version("m", &[], true)).await.unwrap();

    // A stops renewing (paused, partitioned) and its lease runs out: the clock is played by expiring the row.
    assert!(
        b.acquire_lease("singletons", "replica-b", 5_000)
            .await
            .unwrap()
            .is_none()
    );
    env.raw_sql("UPDATE leases SET expires_ms = 0 WHERE name = 'singletons'")
        .await;
    let lb = b
        .acquire_lease("singletons", "replica-b", 5_000)
        .await
        .unwrap()
        .expect("B takes an expired lease over");
    assert!(lb.token > renewed.token);
    // A wakes up and tries to act: refused, nothing written.
    let before = a.versions("m").await.unwrap().len();
    let e = fenced_a
        .set_alias("m", "staging", 1, "replica-a")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::LeaseLost { .. }), "{e:?}");
    assert_eq!(a.versions("m").await.unwrap().len(), before);
    assert!(
        a.acquire_lease("singletons", "replica-a", 300)
            .await
            .unwrap()
            .is_none()
    );
    // B's fenced writes go through; a clean release lets A in at once.
    b.fenced(&lb)
        .set_alias("m", "staging", 1, "replica-b")
        .await
        .unwrap();
    b.release_lease(&lb).await.unwrap();
    let again = a
        .acquire_lease("singletons", "replica-a", 300)
        .await
        .unwrap()
        .unwrap();
    assert!(again.token > lb.token);
    let takeovers = a
        .audit_records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "lease.takeover")
        .count();
    assert_eq!(takeovers, 3, "first acquisition, B's takeover, A's return");
    assert!(a.audit_verify().await.unwrap().ok);
}
