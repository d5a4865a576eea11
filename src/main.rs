//! The `upgrade` executable: parse arguments, set up logging, run one command, exit with its code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match upgrade::cli::parse_args() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    upgrade::cli::init_logging(cli.verbose, cli.quiet, cli.no_color);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    ExitCode::from(runtime.block_on(upgrade::cli::run(cli)))
}
