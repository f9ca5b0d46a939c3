//! The `sesame` server: configuration, CLI, HTTP API, cookies and CSRF, on
//! top of the `sesame-core` engine.

pub mod config;
