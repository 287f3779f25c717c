//! The `ackbar` binary: parse the command line, hand over to the library.

use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ackbar::cli::main(ackbar::cli::Cli::parse())
}
