//! In-process inference cost of the employment model with 200 trees, at batch 1: the model alone, the request
//! schema check plus the model, and JSON parsing plus both (everything a request costs except HTTP).
//!
//! Needs the employment data in the asset cache (`scripts/fetch-assets.sh nannyml`).
//! Run: `cargo bench -p keel-engine --bench predict`

use criterion::{Criterion, criterion_group, criterion_main};
use keel_data::infer::InferOptions;
use keel_engine::{RequestSchema, UnseenCategory};
use keel_ml::gbdt::{self, GbdtParams};
use keel_ml::{Encoder, FeatureSpec, Model, ModelKind, Objective};
use std::hint::black_box;
use std::path::PathBuf;

fn employment_model() -> (Model, keel_core::Schema, keel_core::Frame) {
    let cache = std::env::var("KEEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/keel"));
    let path = cache.join("nannyml-0.13.1/employment_MA_reference.pq");
    let table = keel_data::read_table(&path).expect("run scripts/fetch-assets.sh nannyml first");
    let schema = keel_data::infer_schema(&table, &InferOptions::default());
    let (frame, _) = keel_data::to_frame(&table, &schema).unwrap();
    let drop = [
        "id",
        "year",
        "prediction",
        "predicted_probability",
        "employed",
    ];
    let names: Vec<String> = frame
        .names
        .iter()
        .filter(|n| !drop.contains(&n.as_str()))
        .cloned()
        .collect();
    let specs = FeatureSpec::from_frame(&frame, &names).unwrap();
    let x = Encoder::new(&specs).encode(&frame).unwrap();
    let y: Vec<f64> = match frame.column("employed").unwrap() {
        keel_core::ColumnData::Numeric(v) => v.clone(),
        _ => unreachable!(),
    };
    let p = GbdtParams {
        n_trees: 200,
        ..Default::default()
    };
    let (ens, _) = gbdt::train(&specs, &x, &y, Objective::Binary, &p, None, &mut |_, _| {
        true
    })
    .unwrap();
    let model = Model {
        objective: Objective::Binary,
        target: "employed".into(),
        class_labels: None,
        features: specs,
        kind: ModelKind::Gbdt(ens),
        link: keel_ml::model::Link::of(Objective::Binary),
        numerics: keel_ml::model::Numerics::F64,
    };
    (model, schema, frame)
}

fn bench(c: &mut Criterion) {
    let (model, schema, frame) = employment_model();

    let check = RequestSchema::new(&model.features, &schema, UnseenCategory::Reject);
    let nf = model.features.len();
    let rows = Encoder::new(&model.features).encode(&frame).unwrap();
    // A real record as a client would send it.
    let mut record = serde_json::Map::new();
    for (j, f) in model.features.iter().enumerate() {
        let col = frame.column(&f.name).unwrap();
        let v = col.display(7).unwrap();
        record.insert(
            f.name.clone(),
            match &f.kind {
                keel_ml::FeatureKind::Numeric | keel_ml::FeatureKind::Time { .. } => {
                    serde_json::json!(rows[7 * nf + j])
                }
                keel_ml::FeatureKind::Categorical { .. } => serde_json::json!(v),
            },
        );
    }
    let value = serde_json::Value::Object(record);
    let body = value.to_string();
    let mut i = 0usize;
    let n = rows.len() / nf;
    c.bench_function("model only, 200 trees, batch 1", |b| {
        b.iter(|| {
            i = (i + 1) % n;
            black_box(model.predict(black_box(&rows[i * nf..(i + 1) * nf])))
        })
    });
    let mut row = vec![0.0; nf];
    let mut errors = Vec::new();
    c.bench_function("schema check + model, batch 1", |b| {
        b.iter(|| {
            errors.clear();
            assert!(check.check_record(black_box(&value), "$", &mut row, &mut errors));
            black_box(model.predict(&row))
        })
    });
    c.bench_function("JSON parse + schema check + model, batch 1", |b| {
        b.iter(|| {
            let parsed = check
                .parse_json_body(black_box(body.as_bytes()), 1000)
                .unwrap();
            black_box(model.predict(&parsed.rows))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
