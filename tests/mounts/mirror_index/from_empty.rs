//! A mirror starting from empty: the snapshot is unpacked while it downloads, and what it
//! unpacked is used only once the object's hash has checked.

use std::fs;

use super::{assert_same_views, Mirror, Primary, Proxy};
use crate::common::{mirror::SYNC, process::wait_for};

/// Bytes that are not the snapshot the root names — here a genuine object of the same index
/// (the head delta), which unpacks into a well-formed database — are refused by hash; none
/// of them becomes the catalog or stays behind, and the genuine snapshot is adopted next.
#[test]
fn a_snapshot_that_is_not_the_named_object_is_refused_though_it_unpacked() {
    let primary = Primary::start();
    primary.publish("second", "2.0");
    let root = primary.root();
    let snapshot = root["snapshot"]["sha256"].as_str().unwrap().to_string();
    let head = root["head"]["sha256"].as_str().unwrap().to_string();
    assert_ne!(snapshot, head);
    let objects = primary.site.w.repo.root.join("index/objects");
    let proxy = Proxy::start(primary.port);
    proxy.set(
        &format!("/index/objects/{snapshot}"),
        fs::read(objects.join(&head)).unwrap(),
    );
    let m = Mirror::start(&proxy.url(), &primary.key, None);
    m.wait_refused("bad-hash");
    // Syncs that stop at the root from now on, so none is unpacking while tmp/ is looked at.
    proxy.not_found("/index/root.asc");
    wait_for("a sync that stops at the root", SYNC, || {
        (m.setting("upstream_state").as_deref() == Some("unreachable")).then_some(())
    });
    assert_eq!(m.generation(), None);
    let catalog = m.repo.root.join("catalog.sqlite");
    assert!(!fs::symlink_metadata(&catalog).unwrap().is_symlink());
    assert!(!m.repo.root.join("index/objects").join(&snapshot).exists());
    let left: Vec<_> = fs::read_dir(m.repo.root.join("index/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in index/tmp: {left:?}");
    assert!(!m.mnt.path("dists/hello").exists());

    proxy.clear();
    m.wait_generation(2);
    assert!(fs::symlink_metadata(&catalog).unwrap().is_symlink());
    assert_same_views(&primary.site.mnt, &m.mnt);
}
