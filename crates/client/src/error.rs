//! The crate's error type: what a caller can act on, with the cause kept as `source`.

/// A boxed error from a caller's token provider.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the client and its HTTP calls. Connection trouble is not an error: it is
/// reported as [`crate::Event::State`] while the client reconnects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A channel name breaks the grammar `^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$`.
    #[error("invalid channel name {0:?}")]
    BadChannel(String),
    /// `build` was called outside a Tokio runtime.
    #[error("the client needs a Tokio runtime")]
    NoRuntime,
    /// The client was closed, or its connection ended for good.
    #[error("the client is closed")]
    Closed,
    /// The server ended the connection for good (see [`crate::ConnectionState::Closed`]).
    #[error("the connection ended{}: {reason}", code.map(|c| format!(" with {c}")).unwrap_or_default())]
    Ended { code: Option<u16>, reason: String },
    /// Writing the output failed.
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    /// An HTTP request could not be made or its answer not read.
    #[error("HTTP request failed")]
    Request(#[from] reqwest::Error),
    /// The server answered with an error status and body.
    #[error("the server answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server's answer was not the JSON expected.
    #[error("malformed answer from the server")]
    Decode(#[source] serde_json::Error),
    /// A caller's input was not JSON.
    #[error("{what} is not JSON")]
    NotJson {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The token provider failed.
    #[error("the token provider failed")]
    TokenProvider(#[source] BoxError),
}

/// `error` and its sources, `: `-separated: the whole story on one line.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
