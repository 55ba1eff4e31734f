//! The `tollgate` binary.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tollgate::cli::run(tollgate::cli::Cli::parse())
}
