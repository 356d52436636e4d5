//! `kubectl-svcproxy`: parse the command line, set up logging, run the command, map the result to an
//! exit code (0 clean, 1 findings, 2 usage or runtime error).

use std::io::Write;
use std::panic;
use std::process::ExitCode;

use owo_colors::OwoColorize;
use svcproxy::cli::Cli;
use svcproxy::commands::{self, Context, EXIT_ERROR};
use svcproxy::output::{ColorMode, log};

// A full sync plans and drops about a million small allocations at 10k Services; mimalloc serves them
// faster than glibc's malloc and keeps each size class together, which also makes rendering the
// payload read memory in order. Measured in benches/engine.rs; `--no-default-features` builds
// without it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let (cli, bin_name) = match Cli::parse_args(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(err) => err.exit(),
    };
    let colors = ColorMode::detect(cli.global.color);
    colors.apply();
    log::init(cli.global.verbose, colors.stderr);
    install_panic_hook(colors.stderr);

    let ctx = Context {
        bin_name,
        global: cli.global.clone(),
        colors,
    };
    match panic::catch_unwind(|| commands::run(&ctx, &cli.command)) {
        Ok(Ok(outcome)) => ExitCode::from(outcome.exit_code()),
        Ok(Err(err)) => {
            report(colors.stderr, &format!("{err:#}"));
            ExitCode::from(EXIT_ERROR)
        }
        Err(_) => ExitCode::from(EXIT_ERROR),
    }
}

/// Prints `error: MESSAGE` on stderr. A closed stderr is ignored: there is nowhere left to report to.
fn report(color: bool, message: &str) {
    let label = if color {
        "error:".red().bold().to_string()
    } else {
        "error:".to_owned()
    };
    let _ = writeln!(std::io::stderr().lock(), "{label} {message}");
}

/// A bug must not greet the user with a backtrace: print one line that says what happened and where to
/// report it.
fn install_panic_hook(color: bool) {
    panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".to_owned());
        report(
            color,
            &format!(
                "internal error ({payload}{location}); please report it at {}/issues",
                env!("CARGO_PKG_REPOSITORY")
            ),
        );
    }));
}
