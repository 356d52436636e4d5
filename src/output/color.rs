//! Whether to colour output: the `--color` flag wins, then `NO_COLOR`, then whether the stream is a
//! terminal that supports colour (owo-colors' detection, which also honours `FORCE_COLOR` and
//! `TERM=dumb`).

use std::ffi::OsStr;

use owo_colors::{OwoColorize, Stream};

use crate::cli::ColorChoice;

/// The colour decision for both output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColorMode {
    /// Colour what goes to stdout.
    pub stdout: bool,
    /// Colour what goes to stderr (logs and error messages).
    pub stderr: bool,
}

impl ColorMode {
    /// Decides for both streams from the flag, the environment and the terminals. Call it once, before
    /// [`ColorMode::apply`].
    pub fn detect(choice: ColorChoice) -> ColorMode {
        let no_color = std::env::var_os("NO_COLOR");
        ColorMode {
            stdout: decide(choice, no_color.as_deref(), || {
                stream_supports_color(Stream::Stdout)
            }),
            stderr: decide(choice, no_color.as_deref(), || {
                stream_supports_color(Stream::Stderr)
            }),
        }
    }

    /// Makes owo-colors' `if_supports_color(Stream::Stdout, …)` follow the stdout decision.
    pub fn apply(self) {
        owo_colors::set_override(self.stdout);
    }
}

/// The decision for one stream. `no_color` is the value of `NO_COLOR`: per no-color.org only a
/// non-empty value disables colour. `terminal_supports` is asked only when flag and environment leave
/// the choice open.
pub fn decide(
    choice: ColorChoice,
    no_color: Option<&OsStr>,
    terminal_supports: impl FnOnce() -> bool,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            if no_color.is_some_and(|value| !value.is_empty()) {
                false
            } else {
                terminal_supports()
            }
        }
    }
}

/// owo-colors' own detection for `stream`. owo-colors exposes it only through `if_supports_color`, so
/// style a probe and see whether the style was applied. Valid while no override is set.
fn stream_supports_color(stream: Stream) -> bool {
    let probe = "x";
    probe
        .if_supports_color(stream, |text| text.red())
        .to_string()
        != probe
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable_terminal() -> bool {
        panic!("the terminal must not be consulted")
    }

    #[test]
    fn the_flag_wins_over_everything() {
        assert!(!decide(ColorChoice::Never, None, unreachable_terminal));
        assert!(decide(
            ColorChoice::Always,
            Some(OsStr::new("1")),
            unreachable_terminal
        ));
    }

    #[test]
    fn no_color_disables_auto() {
        assert!(!decide(
            ColorChoice::Auto,
            Some(OsStr::new("1")),
            unreachable_terminal
        ));
        assert!(!decide(
            ColorChoice::Auto,
            Some(OsStr::new("false")),
            unreachable_terminal
        ));
    }

    #[test]
    fn an_empty_no_color_is_ignored() {
        assert!(decide(ColorChoice::Auto, Some(OsStr::new("")), || true));
    }

    #[test]
    fn auto_follows_the_terminal() {
        assert!(decide(ColorChoice::Auto, None, || true));
        assert!(!decide(ColorChoice::Auto, None, || false));
    }
}
