//! The `ackbar` binary: parse the command line, hand over to the library.

use clap::Parser;

/// See the `jemalloc` feature in Cargo.toml for why.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    ackbar::cli::main(ackbar::cli::Cli::parse())
}
