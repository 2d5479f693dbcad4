//! Tests that really mount: `repofs mount` as a FUSE filesystem, driven by real clients
//! (cp, rsync, dd, tar, sha256sum, gnupload, scp/sftp over a loopback sshd) as root and as
//! unprivileged users. CI runs them as root with /dev/fuse.

#[path = "../common/mod.rs"]
pub mod common;

mod corpus;
mod corrupt;
mod fleet;
mod http_dists;
mod image;
mod incoming;
mod install;
mod lifecycle;
mod meta_deltas;
mod metrics;
mod mirror_fetch;
mod mirror_hold;
mod mirror_index;
mod mirror_origin;
mod pkgmeta;
mod pkgs;
mod stock_clients;
mod torrents;
mod views;
