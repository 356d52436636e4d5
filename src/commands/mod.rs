//! One module per subcommand. Each takes the parsed flags and a [`Context`], does its work, and returns
//! an [`Outcome`]; errors carry context that names what failed and how to fix it.

pub mod bundle;
pub mod chains;
pub mod diag;
pub mod node_context;
pub mod proxy;
pub mod render;
pub mod trace;
pub mod tui;

use crate::cli::{Command, GlobalArgs};
use crate::output::ColorMode;

/// The exit code for usage and runtime errors.
pub const EXIT_ERROR: u8 = 2;

/// What every command gets besides its own flags.
#[derive(Debug, Clone)]
pub struct Context {
    /// How the program names itself (`kubectl svcproxy` in plugin mode), for messages.
    pub bin_name: String,
    /// The global flags.
    pub global: GlobalArgs,
    /// Whether to colour stdout and stderr.
    pub colors: ColorMode,
}

impl Context {
    /// `bin_name` followed by `subcommand`, as a user would type it.
    pub fn command_line(&self, subcommand: &str) -> String {
        format!("{} {subcommand}", self.bin_name)
    }
}

/// How a command that ran to the end turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report (exit code 0).
    Clean,
    /// The command found drift or a broken path (exit code 1).
    Findings,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Clean => 0,
            Outcome::Findings => 1,
        }
    }
}

/// Runs `command`.
pub fn run(ctx: &Context, command: &Command) -> anyhow::Result<Outcome> {
    tracing::debug!(command = command.name(), "running");
    match command {
        Command::Proxy(args) => proxy::run(ctx, args),
        Command::Trace(args) => trace::run(ctx, args),
        Command::Chains(args) => chains::run(ctx, args),
        Command::Tui(args) => tui::run(ctx, args),
        Command::Render(args) => render::run(ctx, args),
        Command::Bundle(args) => bundle::run(ctx, args),
    }
}

/// The error of a subcommand this version does not include.
fn not_available(ctx: &Context, subcommand: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "`{}` is not available in this version yet",
        ctx.command_line(subcommand)
    )
}
