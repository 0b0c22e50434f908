//! Every kind of bad input gets a clear message naming what is wrong and where, exit code 2, and leaves the
//! registry exactly as it was.

use crate::*;

struct Case {
    name: &'static str,
    file: PathBuf,
    extra: Vec<String>,
    expect: Vec<&'static str>,
}

#[test]
fn bad_inputs_fail_cleanly_and_leave_the_registry_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let d = dir.path();
    seed_registry(&home, d);
    let before = registry_snapshot(&home);

    let good = fixture_csv(d, "good.csv", 200);
    let mut many_values = String::from("x,y\n");
    for i in 0..60 {
        many_values.push_str(&format!("{},{}\n", i, i % 3));
    }
    let mut all_null = String::from("x,e,y\n");
    let mut single = String::from("x,s,y\n");
    for i in 0..60 {
        all_null.push_str(&format!("{i},,{}\n", i % 2));
        single.push_str(&format!("{i},same,{}\n", i % 2));
    }
    let schema = write(
        d,
        "schema.toml",
        "[[column]]\nname = \"missing_col\"\ntype = \"numeric\"\n",
    );
    std::fs::write(d.join("binary.csv"), [0u8, 1, 2, 3, 255, 254, 0, 10]).unwrap();

    let cases = vec![
        Case {
            name: "missing file",
            file: d.join("nope.csv"),
            extra: vec![],
            expect: vec!["nope.csv", "not found"],
        },
        Case {
            name: "parquet extension, CSV content",
            file: write(d, "fake.parquet", "x,y\n1,0\n"),
            extra: vec![],
            expect: vec!["fake.parquet", "not a Parquet file"],
        },
        Case {
            name: "binary file as CSV",
            file: d.join("binary.csv"),
            extra: vec![],
            expect: vec!["binary.csv", "not a text CSV"],
        },
        Case {
            name: "ragged CSV",
            file: write(d, "ragged.csv", "x,c,y\n1,a,0\n2,b\n3,c,1,9\n"),
            extra: vec![],
            expect: vec!["ragged.csv", "malformed CSV", "line 3"],
        },
        Case {
            name: "zero rows",
            file: write(d, "empty.csv", "x,c,y\n"),
            extra: vec![],
            expect: vec!["empty.csv", "no data rows"],
        },
        Case {
            name: "empty file",
            file: write(d, "blank.csv", ""),
            extra: vec![],
            expect: vec!["blank.csv", "no data rows"],
        },
        Case {
            name: "missing target",
            file: write(d, "notarget.csv", "x,c\n1,a\n2,b\n"),
            extra: vec![],
            expect: vec!["notarget.csv", "target column 'y'", "not in the file"],
        },
        Case {
            name: "constant target",
            file: write(d, "const.csv", "x,c,y\n1,a,1\n2,b,1\n3,c,1\n"),
            extra: vec!["--objective".into(), "binary".into()],
            expect: vec!["const.csv", "'y'", "constant"],
        },
        Case {
            name: "non-binary target for classification",
            file: write(d, "multi.csv", &many_values),
            extra: vec!["--objective".into(), "binary".into()],
            expect: vec!["multi.csv", "'y'", "3 distinct values"],
        },
        Case {
            name: "target with empty cells",
            file: write(d, "gaps.csv", "x,c,y\n1,a,1\n2,b,\n3,c,0\n"),
            extra: vec![],
            expect: vec!["gaps.csv", "'y'", "rows 2"],
        },
        Case {
            name: "all-null feature",
            file: write(d, "allnull.csv", &all_null),
            extra: vec![],
            expect: vec!["allnull.csv", "'e'", "entirely empty"],
        },
        Case {
            name: "single-valued feature",
            file: write(d, "single.csv", &single),
            extra: vec![],
            expect: vec!["single.csv", "'s'", "single value"],
        },
        Case {
            name: "schema mismatch (declared column absent)",
            file: good.clone(),
            extra: vec!["--schema".into(), schema.display().to_string()],
            expect: vec![
                "good.csv",
                "missing_col",
                "declared in the schema but not in the file",
            ],
        },
        Case {
            name: "schema mismatch (cell of the wrong type)",
            file: write(
                d,
                "types.csv",
                &format!(
                    "x,y\n{}oops,1\n",
                    (0..300)
                        .map(|i| format!("{i},{}\n", i % 2))
                        .collect::<String>()
                ),
            ),
            extra: vec![],
            expect: vec!["types.csv", "row 301", "column 'x'", "'oops'"],
        },
        Case {
            name: "duplicate column names",
            file: write(d, "dup.csv", "x,y,x\n1,0,2\n"),
            extra: vec![],
            expect: vec!["dup.csv", "'x'", "more than once", "columns 1 and 3"],
        },
        Case {
            name: "unknown --drop column",
            file: good.clone(),
            extra: vec!["--drop".into(), "nosuch".into()],
            expect: vec!["good.csv", "'nosuch'", "not in the file"],
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let mut args: Vec<String> = [
            "train",
            "--data",
            c.file.to_str().unwrap(),
            "--target",
            "y",
            "--name",
            "seed",
            "--trees",
            "10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(c.extra.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = keel(&home, &refs);
        let err = stderr(&o);
        if o.status.code() != Some(2) {
            failures.push(format!(
                "{}: exit {:?}, stderr: {err}",
                c.name,
                o.status.code()
            ));
            continue;
        }
        for e in &c.expect {
            if !err.contains(e) {
                failures.push(format!("{}: message lacks '{e}': {err}", c.name));
            }
        }
        // JSON mode reports the same error machine-readably.
        let mut jargs = refs.clone();
        jargs.push("--json");
        let jo = keel(&home, &jargs);
        let j = stdout_json(&jo);
        if j["error"]["code"].as_str().is_none() || jo.status.code() != Some(2) {
            failures.push(format!("{}: JSON error missing: {j}", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        registry_snapshot(&home),
        before,
        "a failed command changed the registry"
    );
}

#[test]
fn usage_errors_exit_2_and_unknown_models_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let o = keel(&home, &["train", "--data"]);
    assert_eq!(o.status.code(), Some(2));
    let o = keel(&home, &["models", "show", "ghost", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'ghost' is not registered"),
        "{}",
        stderr(&o)
    );
    seed_registry(&home, dir.path());
    let o = keel(&home, &["models", "show", "seed@7"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no version 7"), "{}", stderr(&o));
    let o = keel(&home, &["models", "show", "seed@champion", "--json"]);
    assert!(o.status.success());
    assert_eq!(stdout_json(&o)["version"], 1);
}
