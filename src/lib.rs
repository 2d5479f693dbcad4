//! repofs: a package repository that lives as a mounted filesystem.
//!
//! Data flows spool -> verify -> publish -> catalog -> views -> fetch; see ARCHITECTURE.md.

pub mod archive;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod control;
pub mod deps;
pub mod failpoint;
pub mod fetch;
pub mod ingest;
pub mod install;
pub mod keys;
pub mod mountinfo;
pub mod paths;
pub mod pkgmeta;
pub mod reason;
pub mod repo;
pub mod store;
pub mod sync;
pub mod time;
pub mod torrent;
pub mod verify;
pub mod version;
pub mod vfs;

pub use config::{Config, Layout};
pub use reason::{Reason, Rejection};
pub use repo::Repo;
