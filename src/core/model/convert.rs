//! Conversion from k8s-openapi types to the model.
