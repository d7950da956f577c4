//! Hostile agents against merged (see the module above).

#[allow(unused_imports)]
use super::*;
