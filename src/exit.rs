//! Maps an error to one line on stderr and an exit code (2 for user mistakes).

use std::process::ExitCode;

/// A mistake the user can fix (a flag, a file, a key): exits with code 2.
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Builds an `anyhow::Error` that exits with code 2.
pub fn user(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(msg.into()))
}

/// True when some error in the chain is one the user caused.
fn is_user_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<UserError>()
            || cause.downcast_ref::<engine::Error>().is_some_and(engine::Error::is_user_error)
            || cause.downcast_ref::<backbone::Error>().is_some_and(backbone::Error::is_user_error)
            || cause.downcast_ref::<coco::Error>().is_some_and(coco::Error::is_user_error)
            || cause.downcast_ref::<detector::Error>().is_some_and(detector::Error::is_user_error)
            || cause.downcast_ref::<vision::Error>().is_some_and(vision::Error::is_user_error)
            || cause.downcast_ref::<classification::Error>().is_some_and(classification::Error::is_user_error)
            || cause.downcast_ref::<vision::datasets::DatasetError>().is_some()
            || cause.downcast_ref::<pretrain::Error>().is_some_and(pretrain::Error::is_user_error)
            || cause.downcast_ref::<analysis::Error>().is_some_and(analysis::Error::is_user_error)
            || cause.downcast_ref::<clap::Error>().is_some()
    })
}

/// True when stdout was closed under us (`vitdet ... | head`): not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints `error: ...` (the context chain, first line only) and picks the exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    // One line: candle appends a backtrace to its errors' text when
    // RUST_BACKTRACE is set; the user gets the message, not the frames.
    let message = format!("{err:#}");
    eprintln!("error: {}", message.lines().next().unwrap_or_default().trim_end());
    if is_user_error(err) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
