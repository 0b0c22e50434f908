//! Any bytes given to the ONNX importer: an error or a model, never a panic, hang or unbounded allocation;
//! a model that imports must score a row of zeros and of NaNs without panicking.
#![no_main]

use keel_ml::import::{Format, import};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = import(data, Some(Format::Onnx), "y") {
        let n = m.model.features.len();
        let _ = m.model.predict(&vec![0.0; n]);
        let _ = m.model.predict(&vec![f64::NAN; n]);
        let _ = m.model.to_bytes();
    }
});
