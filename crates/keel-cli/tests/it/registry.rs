//! Crash consistency and read-only homes.

use crate::*;
use std::process::Command;

#[test]
fn a_crash_at_any_point_of_registration_leaves_the_registry_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = seed_registry(&home, dir.path());
    let before = registry_snapshot(&home);
    for point in [
        "registry.after_artifact",
        "registry.mid_registration",
        "registry.before_commit",
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args([
                "train",
                "--data",
                data.to_str().unwrap(),
                "--target",
                "y",
                "--name",
                "seed",
                "--trees",
                "15",
                "--alias",
                "champion",
            ])
            .env("KEEL_HOME", &home)
            .env("KEEL_FAILPOINT", point)
            .output()
            .unwrap();
        // Aborted by the failpoint, like a crash: no exit code.
        assert_eq!(
            o.status.code(),
            None,
            "{point}: expected an abort, got {:?}: {}",
            o.status,
            stderr(&o)
        );
        let (models, _) = registry_snapshot(&home);
        assert_eq!(models, before.0, "{point}: registry rows changed");
        let seed = &models["models"][0];
        assert_eq!(
            seed["latest_version"], 1,
            "{point}: a half version is visible"
        );
        assert_eq!(
            seed["aliases"],
            serde_json::json!({"champion": 1}),
            "{point}: alias moved"
        );
        let problems = tokio::runtime::Runtime::new().unwrap().block_on(async {
            let s = keel_store::Store::open(&home).await.unwrap();
            s.check().await.unwrap()
        });
        assert!(problems.is_empty(), "{point}: {problems:?}");
    }
    // After the crashes, registration works and takes the next version number.
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y",
            "--name",
            "seed",
            "--trees",
            "15",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["version"], 2);
}

#[test]
fn a_read_only_home_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mount = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            "size=64m",
            "tmpfs",
            mnt.to_str().unwrap()
        ]),
        "this test needs to mount a tmpfs (run as root)"
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&mnt);
    let home = mnt.join("home");
    let data = seed_registry(&home, dir.path());
    let before = registry_snapshot(&home);
    let db_bytes = std::fs::read(home.join("registry.db")).unwrap();
    assert!(mount(&["-o", "remount,ro", mnt.to_str().unwrap()]));
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y",
            "--name",
            "seed",
            "--trees",
            "10",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("read-only"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(home.to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    assert!(mount(&["-o", "remount,rw", mnt.to_str().unwrap()]));
    assert_eq!(std::fs::read(home.join("registry.db")).unwrap(), db_bytes);
    assert_eq!(registry_snapshot(&home), before);
}
