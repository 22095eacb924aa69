//! The `twin` binary: parse the command line, hand over to the library, exit
//! with its code.

use clap::Parser;

fn main() {
    let cli = twin::cli::Cli::parse();
    std::process::exit(twin::cli::run(cli));
}
