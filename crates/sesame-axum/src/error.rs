//! The crate's one error type: what can go wrong while building a
//! [`SesameAuth`](crate::SesameAuth). Request-time failures are not errors
//! of this kind; they are answers ([`AuthRejection`](crate::AuthRejection)).

/// Why [`SesameAuthBuilder::build`](crate::SesameAuthBuilder::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or invalid; `setting` names the builder method.
    #[error("{setting}: {message}")]
    Config {
        /// The builder method (`issuer`, `jwks_url`, …).
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The JWKS could not be fetched or read.
    #[error("fetching the JWKS from {url} failed: {message}")]
    Jwks {
        /// The JWKS URL.
        url: String,
        /// What went wrong.
        message: String,
        /// The underlying HTTP error, when there was one.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The HTTP client could not be set up.
    #[error("building the HTTP client failed")]
    Http(#[source] reqwest::Error),
}

impl Error {
    pub(crate) fn config(setting: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            setting,
            message: message.into(),
        }
    }
}
