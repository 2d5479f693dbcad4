//! FUSE views over the catalog: `incoming/`, `dists/`, `pkgs/`.
//!
//! Not built yet: the mount is the next stage (it puts a filesystem in front of the ingest
//! pipeline). Everything it needs to list trees without touching content is already recorded
//! by `catalog` at publish time.
