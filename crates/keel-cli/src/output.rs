//! Output helpers: JSON or human text, error classification and progress bars.

use keel_core::ErrorClass;
use serde::Serialize;

/// Maps an error chain to its class by finding the first typed Keel error in it.
pub fn classify(e: &anyhow::Error) -> ErrorClass {
    for cause in e.chain() {
        if let Some(x) = cause.downcast_ref::<keel_app::Error>() {
            return x.class();
        }
        if let Some(x) = cause.downcast_ref::<keel_data::Error>() {
            return x.class();
        }
        if let Some(x) = cause.downcast_ref::<keel_ml::Error>() {
            return x.class();
        }
        if let Some(x) = cause.downcast_ref::<keel_engine::Error>() {
            return x.class();
        }
        if let Some(x) = cause.downcast_ref::<keel_monitor::Error>() {
            return x.class();
        }
        if let Some(x) = cause.downcast_ref::<keel_store::Error>() {
            return x.class();
        }
        if let Some(x) = cause.downcast_ref::<keel_rag::Error>() {
            return x.class();
        }
        if let Some(x) = cause.downcast_ref::<keel_guard::Error>() {
            return x.class();
        }
        if let Some(x) = cause.downcast_ref::<keel_app::guard::LoadError>() {
            return x.class();
        }
        if let Some(x) = cause.downcast_ref::<crate::cmd::CliError>() {
            return x.class;
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return ErrorClass::Io;
        }
    }
    ErrorClass::Internal
}

pub fn print_error(e: &anyhow::Error, class: ErrorClass, json: bool) {
    let message = format!("{e:#}");
    if json {
        let body = serde_json::json!({"error": {"code": class.code(), "message": message}});
        println!("{body}");
    }
    eprintln!("error: {message}");
}

pub fn print_json<T: Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("serialisable output")
    );
}

/// A progress bar on stderr (hidden when stderr is not a terminal or output is JSON).
pub fn bar(len: u64, what: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg:<18} [{bar:32}] {pos}/{len} {elapsed}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

/// A spinner for steps of unknown length.
pub fn spinner(what: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let s = indicatif::ProgressBar::new_spinner();
    s.set_message(what.to_string());
    s.enable_steady_tick(std::time::Duration::from_millis(100));
    s
}

/// `keel … | head -1`: when the reader closes the pipe, end the way command-line tools do (killed by
/// SIGPIPE, status 141 in a shell), quietly, instead of panicking on the failed write. Rust ignores SIGPIPE
/// by default so that writes return an error; the server keeps that (a client closing a socket must not kill
/// it), every other command restores the default.
pub fn die_quietly_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: `signal` with a valid signal number and `SIG_DFL` only changes this process's disposition of
    // SIGPIPE; it runs at start-up, before any thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
