//! The binary over PostgreSQL and S3 (SeaweedFS), as replicas and workers run it: `keel migrate` once, then
//! commands from different homes (pods) sharing one registry. Needs KEEL_TEST_POSTGRES_URL and
//! KEEL_TEST_S3_ENDPOINT (scripts/test.sh starts both; with KEEL_TEST_REQUIRE_SERVICES=1 a missing one fails).

use crate::{fixture_csv, stderr, stdout_json};
use std::path::Path;
use std::process::{Command, Output};

/// A pod's environment (`KEEL_DATABASE_URL`, `KEEL_ARTIFACT_URL`, `KEEL_S3_ENDPOINT`), the schema and the
/// server's base URL.
type ScaleEnv = (Vec<(String, String)>, String, String);

/// A fresh schema and artifact prefix: the environment a pod gets (None when the services are not set up).
fn scale_env() -> Option<ScaleEnv> {
    let (Ok(base), Ok(s3)) = (
        std::env::var("KEEL_TEST_POSTGRES_URL"),
        std::env::var("KEEL_TEST_S3_ENDPOINT"),
    ) else {
        assert!(
            std::env::var("KEEL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "KEEL_TEST_POSTGRES_URL / KEEL_TEST_S3_ENDPOINT are not set but services are required"
        );
        eprintln!("skipped: PostgreSQL and S3 are not configured (scripts/test.sh starts them)");
        return None;
    };
    let schema = format!(
        "keel_cli_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut c)
            .await
            .unwrap();
    });
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    Some((
        vec![
            ("KEEL_DATABASE_URL".into(), url),
            ("KEEL_ARTIFACT_URL".into(), format!("s3://keel/{schema}")),
            ("KEEL_S3_ENDPOINT".into(), s3),
        ],
        schema,
        base,
    ))
}

fn drop_schema(base: &str, schema: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::PgConnection::connect(base).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut c)
                .await;
        }
    });
}

fn keel_in(env: &[(String, String)], home: &Path, args: &[&str]) -> Output {
    cmd(env, home, args).output().expect("run keel")
}

fn cmd(env: &[(String, String)], home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.args(args)
        .env("KEEL_HOME", home)
        .env("KEEL_CACHE", crate::cache_dir())
        .env_remove("KEEL_FAILPOINT")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

/// Before `keel migrate`, every command refuses the database and says what to run; two migrations at once
/// apply once; then a model trained from one home is listed, served, scored and audited from others (pods
/// that share no disk), its artifact downloaded once into each pod's cache.
#[test]
fn replicas_share_one_registry_over_postgres_and_s3() {
    let Some((env, schema, base)) = scale_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (trainer, pod) = (dir.path().join("trainer"), dir.path().join("pod"));

    let o = keel_in(&env, &trainer, &["models", "list"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("keel migrate"), "{}", stderr(&o));
    let o = keel_in(&env, &pod, &["serve", "--port", "0", "--no-auth"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "serve must refuse an unmigrated database"
    );
    assert!(stderr(&o).contains("schema version 0"), "{}", stderr(&o));

    let a = cmd(&env, &trainer, &["migrate", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = cmd(&env, &pod, &["migrate", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    let applied = [stdout_json(&a), stdout_json(&b)]
        .iter()
        .filter(|j| j["applied"] == true)
        .count();
    assert_eq!(applied, 1, "exactly one concurrent migration applies");

    let data = fixture_csv(dir.path(), "d.csv", 400);
    let o = keel_in(
        &env,
        &trainer,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y",
            "--name",
            "shared",
            "--trees",
            "20",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !trainer.join("registry.db").exists() && !trainer.join("artifacts").exists(),
        "nothing of the registry lives in the trainer's home"
    );

    // Another pod: lists, scores a file and serves, from the shared registry.
    let o = keel_in(&env, &pod, &["models", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = stdout_json(&o);
    assert_eq!(listed["models"][0]["model"], "shared");
    assert_eq!(listed["models"][0]["champion"]["version"], 1);
    let out = dir.path().join("scored.csv");
    let o = keel_in(
        &env,
        &pod,
        &[
            "predict",
            "--model",
            "shared",
            "--input",
            data.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 401);
    let cached: Vec<_> = walk(&pod.join("cache").join("artifacts"));
    assert_eq!(
        cached.len(),
        1,
        "the model is cached once in the pod: {cached:?}"
    );

    let mut served = cmd(
        &env,
        &pod,
        &["serve", "--port", "0", "--no-auth", "--no-worker"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let port = keel_testkit::bound_port(&mut served).expect("serve reports its port");
    let addr = format!("127.0.0.1:{port}");
    crate::serve::wait_ready(&addr);
    let body = r#"{"x": 3.5, "c": "red"}"#;
    let (status, resp) = crate::serve::http(&addr, "POST", "/v1/models/shared/predict", None, body);
    let _ = served.kill();
    let _ = served.wait();
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains("\"version\":1"), "{resp}");

    // Batch scoring of one shard in object storage, as a pod of an indexed Kubernetes Job runs it.
    let s3cfg = keel_store::StoreConfig {
        s3_endpoint: Some(env[2].1.clone()),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(keel_store::upload_url(
        &s3cfg,
        &data,
        &format!("s3://keel/{schema}/in/part-3.csv"),
    ))
    .unwrap();
    let mut c = cmd(
        &env,
        &pod,
        &[
            "predict",
            "--model",
            "shared",
            "--input",
            &format!("s3://keel/{schema}/in/part-{{index}}.csv"),
            "--output",
            &format!("s3://keel/{schema}/out/scored-{{index}}.csv"),
            "--shard-index-env",
            "JOB_COMPLETION_INDEX",
        ],
    );
    let o = c.env("JOB_COMPLETION_INDEX", "3").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let back = dir.path().join("back.csv");
    rt.block_on(keel_store::download_url(
        &s3cfg,
        &format!("s3://keel/{schema}/out/scored-3.csv"),
        &back,
    ))
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        std::fs::read_to_string(&out).unwrap(),
        "the shard scored in object storage equals the local scoring"
    );
    let o = cmd(
        &env,
        &pod,
        &[
            "predict",
            "--model",
            "shared",
            "--input",
            &format!("s3://keel/{schema}/in/part-{{index}}.csv"),
            "--output",
            "x.csv",
            "--shard-index-env",
            "JOB_COMPLETION_INDEX",
        ],
    )
    .env("JOB_COMPLETION_INDEX", "9")
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("part-9.csv does not exist"),
        "{}",
        stderr(&o)
    );

    // A RAG collection ingested in one home is queried, listed and changed from another: its generation is
    // published to object storage and the database pointer, fetched once into the other pod's cache.
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("ships.md"),
        "# Ships\n\n## What is a keel?\n\nThe structural spine along the bottom of a hull.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("sails.md"),
        "# Sails\n\n## What is a jib?\n\nA triangular sail set ahead of the mast.\n",
    )
    .unwrap();
    let rag = |home: &Path, args: &[&str]| {
        let mut all = vec!["rag"];
        all.extend_from_slice(args);
        all.push("--json");
        let o = keel_in(&env, home, &all);
        assert!(o.status.success(), "rag {args:?}: {}", stderr(&o));
        stdout_json(&o)
    };
    rag(
        &trainer,
        &["ingest", docs.to_str().unwrap(), "--collection", "kb"],
    );
    let listed = rag(&pod, &["list"]);
    assert_eq!(listed["collections"][0]["collection"], "kb", "{listed}");
    let answer = rag(
        &pod,
        &[
            "query",
            "--collection",
            "kb",
            "--question",
            "What is a keel?",
        ],
    );
    assert_eq!(answer["citations"][0]["document"], "ships.md", "{answer}");
    rag(
        &pod,
        &["delete", "--collection", "kb", "--document", "sails.md"],
    );
    // The trainer's copy is behind now; its next read fetches the pod's generation.
    let chunks = keel_in(
        &env,
        &trainer,
        &["rag", "chunks", "--collection", "kb", "--json"],
    );
    assert!(chunks.status.success(), "{}", stderr(&chunks));
    let text = String::from_utf8_lossy(&chunks.stdout);
    assert!(
        text.contains("ships.md") && !text.contains("sails.md"),
        "{text}"
    );

    let o = keel_in(&env, &pod, &["audit", "verify", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["ok"], true);
    drop_schema(&base, &schema);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
