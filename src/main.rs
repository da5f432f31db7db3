//! dropfix binary: parse, run, map the outcome to an exit status.

use clap::Parser;

fn main() {
    let cli = dropfix::cli::Cli::parse();
    let code = match dropfix::app::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dropfix: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
