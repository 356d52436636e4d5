//! Errors raised while turning API objects or a bundle into the model.

use thiserror::Error;

/// Why an object or a bundle could not be turned into the model.
///
/// Object errors name the object as `Kind namespace/name` (`Node name` for cluster-scoped objects) and
/// the field as its JSON path (`spec.ports[1].port`), so a user can find it in the YAML.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// A required field is absent.
    #[error("{object}: missing {field}")]
    MissingField {
        /// `Kind namespace/name` of the object.
        object: String,
        /// The JSON path of the field.
        field: String,
    },
    /// A field has a value that cannot be used.
    #[error("{object}: invalid {field} {value:?}: {reason}")]
    InvalidField {
        /// `Kind namespace/name` of the object.
        object: String,
        /// The JSON path of the field.
        field: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The bundle's `cluster.json` is not a Kubernetes List of known objects.
    #[error("{path}: {reason}")]
    Bundle {
        /// The file.
        path: String,
        /// What is wrong, and how to fix it.
        reason: String,
    },
    /// A file is not valid JSON, or its JSON does not have the expected shape at a known position.
    #[error("{path} line {line} column {column}: {message}; {fix}")]
    Json {
        /// The file.
        path: String,
        /// The 1-based line of the problem.
        line: usize,
        /// The 1-based column of the problem.
        column: usize,
        /// What the JSON parser found.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// An object does not match its Kubernetes schema (a field has the wrong JSON type, an unexpected
    /// `apiVersion`, …).
    #[error("{object}: {reason}")]
    Schema {
        /// `Kind namespace/name` of the object, as far as it could be read.
        object: String,
        /// What the deserializer reported.
        reason: String,
    },
    /// One entry of a bundle's `items` could not be read or converted.
    #[error("{path} line {line} column {column}: items[{index}]: {error}")]
    Item {
        /// The file.
        path: String,
        /// The 0-based index in `items`.
        index: usize,
        /// The 1-based line: of the problem when known, else of the entry's opening brace.
        line: usize,
        /// The 1-based column that goes with `line`.
        column: usize,
        /// The error, naming the object and the field.
        error: Box<ModelError>,
    },
    /// A configuration text (the kube-proxy ConfigMap's `config.conf`) could not be read, or holds a value
    /// that cannot be used.
    #[error("{origin}{}: {message}", line_suffix(*.line))]
    Config {
        /// What the text is, e.g. `kube-system/kube-proxy ConfigMap key config.conf`.
        origin: String,
        /// The 1-based line of the problem, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}
