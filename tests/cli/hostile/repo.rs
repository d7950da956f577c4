//! Hostile agents against repo (see the module above).

#[allow(unused_imports)]
use super::*;
