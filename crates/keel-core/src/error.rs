//! Error classes shared by all crates. Each crate keeps its own typed error enum and says which class each
//! variant belongs to; the binary maps a class to an exit code and the server (later) to an HTTP status, each
//! exactly once.

use serde::Serialize;

/// How an error should be reported to the person or program that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// A check ran and failed (for example, invalid rows). Exit code 1.
    CheckFailed,
    /// The command line was wrong. Exit code 2.
    Usage,
    /// The input (a file, a value, a schema) is wrong. Exit code 2.
    Input,
    /// Reading or writing failed (missing file, read-only disk). Exit code 2.
    Io,
    /// Something that should never happen: a bug in Keel. Exit code 3.
    Internal,
}

impl ErrorClass {
    /// The stable process exit code for this class.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::CheckFailed => 1,
            ErrorClass::Usage | ErrorClass::Input | ErrorClass::Io => 2,
            ErrorClass::Internal => 3,
        }
    }

    /// A stable machine-readable code, used in `--json` error output.
    pub fn code(self) -> &'static str {
        match self {
            ErrorClass::CheckFailed => "check_failed",
            ErrorClass::Usage => "usage",
            ErrorClass::Input => "invalid_input",
            ErrorClass::Io => "io",
            ErrorClass::Internal => "internal",
        }
    }
}
