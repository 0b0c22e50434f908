//! ONNX Runtime for imported neural networks (feature `onnx-runtime`). `libonnxruntime.so` is loaded at run
//! time, on the first network, from `KEEL_ONNXRUNTIME` or the pinned wheel's copy in the asset cache
//! (`scripts/fetch-assets.sh onnxruntime`); a build without the feature, or a machine without the library,
//! refuses networks with an error that says which. Each session runs single-threaded, one request at a time
//! (serving runs many models and many requests; ONNX Runtime's own thread pool would fight Keel's).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use keel_ml::neural::{NeuralNet, Runtime, Session};

/// The library's path: `KEEL_ONNXRUNTIME`, else `$KEEL_CACHE/onnxruntime-1.32.0/libonnxruntime.so.1.32.0`.
pub fn library_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KEEL_ONNXRUNTIME") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("KEEL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/keel")))
        .unwrap_or_else(|| PathBuf::from(".cache/keel"));
    cache.join("onnxruntime-1.32.0/libonnxruntime.so.1.32.0")
}

/// Installs ONNX Runtime as keel-ml's network runtime; the library loads on first use. Returns false when a
/// runtime was already installed.
pub fn install() -> bool {
    keel_ml::neural::install(Box::new(OrtRuntime {
        path: library_path(),
        env: OnceLock::new(),
    }))
}

struct OrtRuntime {
    path: PathBuf,
    env: OnceLock<Result<ort::environment::Environment, String>>,
}

impl OrtRuntime {
    fn env(&self) -> Result<&ort::environment::Environment, String> {
        self.env
            .get_or_init(|| {
                if !self.path.is_file() {
                    return Err(format!(
                        "{} is not there: fetch it with `scripts/fetch-assets.sh onnxruntime` or point KEEL_ONNXRUNTIME at a libonnxruntime.so",
                        self.path.display()
                    ));
                }
                ort::init_from(&self.path)
                    .map_err(|e| format!("loading {}: {e}", self.path.display()))?
                    .with_name("keel")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| format!("starting ONNX Runtime: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl Runtime for OrtRuntime {
    fn load(&self, net: &NeuralNet) -> Result<Arc<dyn Session>, String> {
        let env = self.env()?;
        let session = ort::session::Session::builder(env)
            .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(&net.onnx))
            .map_err(|e| format!("ONNX Runtime refused the network: {e}"))?;
        if !session.inputs().iter().any(|i| i.name() == net.input) {
            return Err(format!("the network has no input '{}'", net.input));
        }
        if !session.outputs().iter().any(|o| o.name() == net.output) {
            return Err(format!("the network has no output '{}'", net.output));
        }
        let s = OrtSession {
            session: Mutex::new(session),
            input: net.input.clone(),
            output: net.output.clone(),
            n_features: net.n_features,
            width: net.output_width,
        };
        // One row of zeros must run and give the declared width: shapes and types agree end to end.
        let out = s.run(&vec![0.0; net.n_features], 1)?;
        if out.len() != net.output_width {
            return Err(format!(
                "output '{}' has {} values per row, not {}",
                net.output,
                out.len(),
                net.output_width
            ));
        }
        Ok(Arc::new(s))
    }
}

struct OrtSession {
    session: Mutex<ort::session::Session>,
    input: String,
    output: String,
    n_features: usize,
    width: usize,
}

impl std::fmt::Debug for OrtSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtSession")
            .field("input", &self.input)
            .field("output", &self.output)
            .field("n_features", &self.n_features)
            .field("width", &self.width)
            .finish()
    }
}

impl Session for OrtSession {
    fn run(&self, rows: &[f32], n: usize) -> Result<Vec<f32>, String> {
        if rows.len() != n * self.n_features {
            return Err(format!(
                "{} values for {n} rows of {} features",
                rows.len(),
                self.n_features
            ));
        }
        let tensor = ort::value::Tensor::from_array(([n, self.n_features], rows.to_vec()))
            .map_err(|e| e.to_string())?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| "a previous run panicked".to_string())?;
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| format!("ONNX Runtime: {e}"))?;
        let (_, values) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("output '{}': {e}", self.output))?;
        Ok(values.to_vec())
    }
}
