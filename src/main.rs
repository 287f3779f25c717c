//! The `ackbar` binary: parse the command line, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    ackbar::cli::main(ackbar::cli::Cli::parse())
}
