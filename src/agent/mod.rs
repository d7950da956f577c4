//! Agent mode and the trust boundary with agents: scoped tokens (now), and the
//! `task`/`check`/`progress`/`done` commands agents run (next).

pub mod token;

pub use token::{Secret, SecretError, Token, TokenError};
