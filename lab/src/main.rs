//! `upgrade-lab`: the lab's command line and the stand-in tools' multi-call entry (TEST DOUBLE).
//! `tool` runs before any logging is set up so a stand-in's stderr is only what the tool prints.

use clap::Parser;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("tool") {
        std::process::exit(upgrade_lab::cli::run_tool(&args[2..]));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = upgrade_lab::cli::Cli::parse();
    match upgrade_lab::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("upgrade-lab: {e}");
            std::process::exit(1);
        }
    }
}
