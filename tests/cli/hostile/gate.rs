//! Hostile agents against gate (see the module above).

#[allow(unused_imports)]
use super::*;
