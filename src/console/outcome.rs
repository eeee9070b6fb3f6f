//! What a command prints and its exit code, kept apart so each command reports the same
//! way: answers on stdout, errors on stderr, "not running" as an answer with its own code.

use std::process::ExitCode;

/// Exit code when the server is not running and the command needs it (as `systemctl
/// status` and LSB init scripts use it).
pub const NOT_RUNNING: u8 = 3;

/// What a command prints and its exit code.
pub(super) struct Outcome {
    text: String,
    code: u8,
    /// An answer (stdout) rather than an error message (stderr).
    answer: bool,
}

impl Outcome {
    pub(super) fn ok(text: String) -> Self {
        Outcome {
            text,
            code: 0,
            answer: true,
        }
    }

    /// A report printed as an answer whose exit code says something went wrong (a test
    /// push that was not answered with success).
    pub(super) fn failed_answer(text: String) -> Self {
        Outcome {
            text,
            code: 1,
            answer: true,
        }
    }

    pub(super) fn fail(text: String) -> Self {
        Outcome {
            text,
            code: 1,
            answer: false,
        }
    }

    /// "Not running" is an answer (stdout), with exit code 3.
    pub(super) fn not_running(text: String) -> Self {
        Outcome {
            text,
            code: NOT_RUNNING,
            answer: true,
        }
    }

    /// Prints (answers on stdout, errors on stderr) and gives the exit code.
    pub(super) fn finish(self) -> ExitCode {
        use std::io::Write;
        let text = self.text.trim_end();
        if self.answer {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        } else {
            let _ = writeln!(std::io::stderr().lock(), "cloud-notify: {text}");
        }
        ExitCode::from(self.code)
    }
}
