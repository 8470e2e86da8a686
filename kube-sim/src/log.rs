//! The request log.

use std::time::Duration;

/// The verb of a request, as in the API server's audit log (`Apply` is a server-side apply
/// patch, `Patch` any other patch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Apply,
    Delete,
    /// `GET /version` and paths the simulator does not serve.
    Other,
}

/// One request the simulated API server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The identity of the client (see [`crate::Sim::client`]).
    pub client: String,
    pub verb: Verb,
    /// API group, `""` for core.
    pub group: String,
    /// Plural resource name; the path for `Verb::Other`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The field manager of a write, if given.
    pub field_manager: Option<String>,
    /// The HTTP status answered (0 for a connection error).
    pub code: u16,
    /// Virtual time since the simulation started.
    pub at: Duration,
}

impl Request {
    /// Does it write (create, update, patch, apply, delete)?
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Apply | Verb::Delete
        )
    }

    /// A successful (2xx) answer?
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.code)
    }
}
