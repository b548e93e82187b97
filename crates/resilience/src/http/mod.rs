//! HTTP outcome classification and Retry-After parsing.
