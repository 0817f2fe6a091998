//! `vitdet`: the command-line front end. This binary only parses arguments,
//! dispatches to a library crate and maps errors to exit codes; every loop over
//! tensors or annotations lives in `engine`, `backbone` or `coco`.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 user mistake (bad flag, missing
//! or malformed file, unknown key, wrong checkpoint shape).

mod commands;
mod exit;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = err.print();
            return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
        }
    };
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => exit::report(&err),
    }
}
