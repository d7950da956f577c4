//! Agent mode and the trust boundary with agents: scoped tokens, the secret,
//! redaction, and the `task`/`check`/`progress`/`done` commands (their brief
//! and events are records of the run directory, `crate::rundir::records`).

pub mod mode;
pub mod redact;
pub mod token;

pub use mode::{AgentEnv, AgentError};
pub use redact::Redactor;
pub use token::{Secret, SecretError, Token, TokenError};
