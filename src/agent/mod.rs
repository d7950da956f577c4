//! Agent mode and the trust boundary with agents: scoped tokens, and the
//! brief and events behind the `task`/`check`/`progress`/`done` commands.

pub mod mode;
pub mod redact;
pub mod token;

pub use mode::{AgentEnv, AgentError, Brief};
pub use redact::Redactor;
pub use token::{Secret, SecretError, Token, TokenError};
