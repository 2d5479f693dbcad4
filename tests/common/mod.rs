//! The shared test harness, by topic: repositories driven through the real binaries, real gpg
//! keyrings in private GNUPGHOMEs, packages made by each ecosystem's own tools, and guards that
//! clean up even when an assertion fails.
//!
//! Every integration test crate (`tests/*.rs`, `tests/mounts/main.rs`) compiles this directory
//! as its own `pub mod common` and imports the topics it uses (`use common::repo::*;`), so a
//! crate's `use` lines are its map of the harness.
//!
//! Why `pub mod common` and no `allow(dead_code)`: the crates share this directory the way they
//! would share a library, and each uses a different part of it, down to single methods of
//! `Repo` or `Gpg`; a helper that one crate does not call would be "dead" in that crate and
//! nowhere else. Declared `pub`, the harness is a library of its crates: its `pub` items are its
//! API, never reported as dead, while everything private in it still is. A `pub` helper that no
//! crate calls any more is not reported: delete it with the last caller.

pub mod clients;
pub mod digest;
pub mod keys;
pub mod mirror;
pub mod mount;
pub mod net;
pub mod netns;
pub mod old_catalog;
pub mod packages;
pub mod process;
pub mod repo;
pub mod site;
pub mod world;
