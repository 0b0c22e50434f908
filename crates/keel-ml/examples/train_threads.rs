//! Times GBDT training on synthetic rows at several thread counts (a quick check, not a benchmark).
use keel_ml::gbdt::{self, GbdtParams};
use keel_ml::{FeatureKind, FeatureSpec, Objective};

fn main() {
    let (n, nf) = (480_000usize, 10usize);
    let mut s = 1u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut x = Vec::with_capacity(n * nf);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let r: Vec<f64> = (0..nf).map(|_| rnd()).collect();
        y.push(f64::from(u8::from(
            r[0] + r[1] * r[2] - r[3] + rnd() * 0.5 > 0.8,
        )));
        x.extend(r);
    }
    let specs: Vec<FeatureSpec> = (0..nf)
        .map(|j| FeatureSpec {
            name: format!("x{j}"),
            kind: FeatureKind::Numeric,
        })
        .collect();
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    for threads in if counts.is_empty() {
        vec![1, 2]
    } else {
        counts
    } {
        let p = GbdtParams {
            n_trees: 60,
            num_threads: threads,
            ..Default::default()
        };
        let t = std::time::Instant::now();
        gbdt::train(&specs, &x, &y, Objective::Binary, &p, None, &mut |_, _| {
            true
        })
        .unwrap();
        println!("threads {threads}: {:.3} s", t.elapsed().as_secs_f64());
    }
}
