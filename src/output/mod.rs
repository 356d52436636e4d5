//! Printing: the colour decision, machine-readable documents, and writing to stdout.
//!
//! Colours are for humans only: JSON and YAML are never coloured.

pub mod color;
pub mod log;

use std::io::{self, Write};

use serde::Serialize;

use crate::cli::OutputFormat;

pub use color::ColorMode;

/// Writes `text` to stdout. A reader that went away (`… | head`) is not an error: the output simply
/// stops, as with any Unix filter.
pub fn print_stdout(text: &str) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    ignore_broken_pipe(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// Writes `value` as pretty JSON followed by a newline.
pub fn write_json<W: Write, T: Serialize + ?Sized>(mut out: W, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Prints `value` to stdout in a machine format (`-o json` or `-o yaml`). Text formats are the
/// command's own business: they give an error naming `command`.
pub fn print_document<T: Serialize + ?Sized>(
    command: &str,
    format: OutputFormat,
    value: &T,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => {
            let stdout = io::stdout();
            ignore_broken_pipe(write_json(stdout.lock(), value))?;
            Ok(())
        }
        OutputFormat::Yaml => {
            let text = serde_saphyr::to_string(&value)
                .map_err(|e| anyhow::anyhow!("cannot print the result as YAML: {e}"))?;
            print_stdout(&text)?;
            Ok(())
        }
        OutputFormat::Text | OutputFormat::Wide => Err(unsupported_format(command, format)),
    }
}

/// The error for an `-o` format a command cannot print.
pub fn unsupported_format(command: &str, format: OutputFormat) -> anyhow::Error {
    let name = match format {
        OutputFormat::Text => "text",
        OutputFormat::Wide => "wide",
        OutputFormat::Json => "json",
        OutputFormat::Yaml => "yaml",
    };
    anyhow::anyhow!(
        "`{command}` does not support -o {name} yet; leave out -o to get its default output"
    )
}

fn ignore_broken_pipe(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_and_newline_terminated() {
        let mut buf = Vec::new();
        write_json(
            &mut buf,
            &serde_json::json!({"kind": "ServiceTrace", "findings": []}),
        )
        .unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.ends_with("}\n"), "{text:?}");
        assert!(text.contains("\n  \"kind\": \"ServiceTrace\""), "{text:?}");
    }

    #[test]
    fn text_formats_give_a_clear_error_naming_the_command() {
        let err = print_document("kubectl svcproxy trace", OutputFormat::Wide, &1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`kubectl svcproxy trace` does not support -o wide yet; leave out -o to get its default output"
        );
    }

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        assert!(ignore_broken_pipe(Err(io::Error::from(io::ErrorKind::BrokenPipe))).is_ok());
        assert!(ignore_broken_pipe(Err(io::Error::from(io::ErrorKind::PermissionDenied))).is_err());
    }
}
