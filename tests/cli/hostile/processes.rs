//! Hostile agents against processes (see the module above).

#[allow(unused_imports)]
use super::*;
