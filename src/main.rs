//! dropfix binary: parse, run, map the outcome to an exit status.

use clap::Parser;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cli = match dropfix::cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 2 as clap's do; with --format json they are JSON too.
            if e.use_stderr() && dropfix::app::usage_error_json(&args, &e.to_string()) {
                eprint!("{e}");
                std::process::exit(2);
            }
            e.exit()
        }
    };
    std::process::exit(dropfix::app::run(cli));
}
