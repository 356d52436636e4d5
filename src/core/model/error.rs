//! Errors raised while turning API objects or a bundle into the model.

use thiserror::Error;

/// Why an object or a bundle could not be turned into the model.
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
}
