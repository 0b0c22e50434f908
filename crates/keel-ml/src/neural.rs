//! Neural networks imported from ONNX (PyTorch, Keras or scikit-learn's MLPs exported to ONNX). They run in
//! ONNX Runtime, which Keel links only when built with the `onnx-runtime` feature (keel-engine); keel-ml keeps
//! the network (the file's bytes and its interface) and a hook the runtime fills in at start-up, so the model
//! is stored, served, monitored, canaried and audited like any other while this crate stays free of the
//! runtime. TreeSHAP does not apply; the card says so.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// A loaded network, ready to score.
pub trait Session: Send + Sync + std::fmt::Debug {
    /// Scores `n` rows of `n_features` f32 values (row-major); returns the output tensor's values, row-major.
    fn run(&self, rows: &[f32], n: usize) -> Result<Vec<f32>, String>;
}

/// What loads networks: ONNX Runtime, installed by the binary when built with `onnx-runtime`.
pub trait Runtime: Send + Sync {
    /// Loads the network and checks its interface against `net` (input and output names, shapes, types).
    fn load(&self, net: &NeuralNet) -> Result<Arc<dyn Session>, String>;
}

static RUNTIME: OnceLock<Box<dyn Runtime>> = OnceLock::new();

/// Installs the runtime (once per process; later calls are ignored and return false).
pub fn install(runtime: Box<dyn Runtime>) -> bool {
    RUNTIME.set(runtime).is_ok()
}

/// The installed runtime, if any.
pub fn runtime() -> Option<&'static dyn Runtime> {
    RUNTIME.get().map(|b| b.as_ref())
}

/// What to tell someone whose Keel has no runtime.
pub const NO_RUNTIME: &str = "this Keel was built without ONNX Runtime: rebuild with `cargo build --release -p keel-cli --features onnx-runtime` and fetch the runtime with `scripts/fetch-assets.sh onnxruntime`";

/// A network with one float input `[rows, n_features]` and one float output `[rows, k]`.
#[derive(Clone, Serialize, Deserialize)]
pub struct NeuralNet {
    /// The ONNX file.
    pub onnx: Vec<u8>,
    pub input: String,
    pub output: String,
    pub n_features: usize,
    /// Columns of the output per row (1: the value; 2: class probabilities, class 1's taken).
    pub output_width: usize,
    /// The column of the output Keel reads.
    pub output_column: usize,
    #[serde(skip)]
    session: OnceLock<Result<Arc<dyn Session>, String>>,
}

impl std::fmt::Debug for NeuralNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuralNet")
            .field("bytes", &self.onnx.len())
            .field("input", &self.input)
            .field("output", &self.output)
            .field("n_features", &self.n_features)
            .field("output_width", &self.output_width)
            .field("output_column", &self.output_column)
            .finish()
    }
}

impl PartialEq for NeuralNet {
    fn eq(&self, o: &Self) -> bool {
        self.onnx == o.onnx
            && self.input == o.input
            && self.output == o.output
            && self.n_features == o.n_features
            && self.output_width == o.output_width
            && self.output_column == o.output_column
    }
}

impl NeuralNet {
    pub fn new(
        onnx: Vec<u8>,
        input: String,
        output: String,
        n_features: usize,
        output_width: usize,
        output_column: usize,
    ) -> Self {
        NeuralNet {
            onnx,
            input,
            output,
            n_features,
            output_width,
            output_column,
            session: OnceLock::new(),
        }
    }

    /// Loads the network into the installed runtime (once); the error says what is missing or wrong.
    pub fn session(&self) -> Result<&Arc<dyn Session>, String> {
        self.session
            .get_or_init(|| match runtime() {
                Some(r) => r.load(self),
                None => Err(NO_RUNTIME.to_string()),
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The network's output for one row (NaN when it cannot run; [`NeuralNet::session`] says why, and
    /// loading a model checks it first).
    pub fn predict(&self, row: &[f64]) -> f64 {
        let x: Vec<f32> = row.iter().map(|v| *v as f32).collect();
        match self.session().and_then(|s| s.run(&x, 1)) {
            Ok(out) => out
                .get(self.output_column)
                .map(|v| f64::from(*v))
                .unwrap_or(f64::NAN),
            Err(_) => f64::NAN,
        }
    }
}
