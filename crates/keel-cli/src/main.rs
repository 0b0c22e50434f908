//! The `keel` binary: flag parsing, wiring and output. The work lives in the library crates.

mod assets;
mod batch_out;
mod cli;
mod cmd;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Imported neural networks: the runtime loads its library on the first network, not here.
    #[cfg(feature = "onnx-runtime")]
    keel_engine::onnxrt::install();
    if !matches!(cli.command, cli::Command::Serve(_)) {
        output::die_quietly_on_closed_stdout();
    }
    let json = cli.json();
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            let class = output::classify(&e);
            output::print_error(&e, class, json);
            ExitCode::from(class.exit_code() as u8)
        }
    }
}
