//! One package's unpacked tree (`PkgTree`, from its catalog entry list) and the cache of the
//! trees used last (`TreeCache`): what pkgs/NAME/VERSION/… shows. Apart from the snapshot
//! because it is loaded per package, when someone first looks inside one, not per catalog
//! change.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use crate::archive::{Entry, EntryKind};

/// One package's unpacked tree, from its catalog entry list. Directories that the archive
/// implies but does not list (tar allows that) are synthesized.
pub struct PkgTree {
    pub entries: Vec<Entry>,
    nodes: Vec<TreeNode>,
    by_path: HashMap<String, usize>,
}

pub struct TreeNode {
    /// Index into `entries`, or None for a synthesized directory (and the root).
    pub entry: Option<usize>,
    pub children: BTreeMap<String, usize>,
}

impl PkgTree {
    pub fn build(entries: Vec<Entry>) -> PkgTree {
        let mut t = PkgTree {
            entries: Vec::new(),
            nodes: vec![TreeNode {
                entry: None,
                children: BTreeMap::new(),
            }],
            by_path: HashMap::with_capacity(entries.len() + 1),
        };
        t.by_path.insert(String::new(), 0);
        for (i, e) in entries.iter().enumerate() {
            let node = t.node_for(&e.path);
            t.nodes[node].entry = Some(i);
        }
        t.entries = entries;
        t
    }

    fn node_for(&mut self, path: &str) -> usize {
        if let Some(&n) = self.by_path.get(path) {
            return n;
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let p = self.node_for(parent);
        let n = self.nodes.len();
        self.nodes.push(TreeNode {
            entry: None,
            children: BTreeMap::new(),
        });
        self.nodes[p].children.insert(name.to_string(), n);
        self.by_path.insert(path.to_string(), n);
        n
    }

    pub fn node(&self, path: &str) -> Option<&TreeNode> {
        self.by_path.get(path).map(|&n| &self.nodes[n])
    }

    /// A node's children, by name, with their nodes (no lookup by path for each).
    pub fn children<'a>(
        &'a self,
        node: &'a TreeNode,
    ) -> impl Iterator<Item = (&'a str, &'a TreeNode)> {
        node.children
            .iter()
            .map(|(name, &i)| (name.as_str(), &self.nodes[i]))
    }

    pub fn entry(&self, node: &TreeNode) -> Option<&Entry> {
        node.entry.map(|i| &self.entries[i])
    }

    /// Whether a node is a directory: listed as one, synthesized, or a parent of others.
    pub fn is_dir(&self, node: &TreeNode) -> bool {
        !node.children.is_empty() || self.entry(node).is_none_or(|e| e.kind == EntryKind::Dir)
    }

    /// The entry holding the bytes of `e`: itself, or the target of a hard link.
    pub fn data_of<'a>(&'a self, e: &'a Entry) -> Option<&'a Entry> {
        match e.kind {
            EntryKind::File => Some(e),
            EntryKind::Hardlink => {
                let target = self.node(e.link_target.as_deref()?)?;
                self.entry(target).filter(|t| t.kind == EntryKind::File)
            }
            _ => None,
        }
    }
}

/// Parsed entry lists of the packages used last, within a budget counted in entries, not
/// packages: one package may hold a million files. The tree just used always stays.
pub struct TreeCache {
    budget: usize,
    /// Least recently used first.
    trees: Vec<(i64, Arc<PkgTree>)>,
}

impl TreeCache {
    pub fn new(budget: usize) -> TreeCache {
        TreeCache {
            budget,
            trees: Vec::new(),
        }
    }

    pub fn get(&mut self, file_id: i64) -> Option<Arc<PkgTree>> {
        let i = self.trees.iter().position(|(id, _)| *id == file_id)?;
        let hit = self.trees.remove(i);
        let t = hit.1.clone();
        self.trees.push(hit);
        Some(t)
    }

    /// Keeps `t`, or returns the tree another thread put there meanwhile.
    pub fn insert(&mut self, file_id: i64, t: Arc<PkgTree>) -> Arc<PkgTree> {
        if let Some(other) = self.get(file_id) {
            return other;
        }
        self.trees.push((file_id, t.clone()));
        let mut kept: usize = self.trees.iter().map(|(_, t)| t.entries.len()).sum();
        while kept > self.budget && self.trees.len() > 1 {
            kept -= self.trees.remove(0).1.entries.len();
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Entry, EntryKind};

    fn tree(files: usize) -> Arc<PkgTree> {
        let entries = (0..files)
            .map(|i| Entry {
                path: format!("f{i}"),
                kind: EntryKind::File,
                mode: 0o644,
                size: 0,
                mtime: 0,
                uid: 0,
                gid: 0,
                link_target: None,
                data_offset: 0,
                sha256: None,
                layout: Default::default(),
            })
            .collect();
        Arc::new(PkgTree::build(entries))
    }

    #[test]
    fn tree_cache_keeps_the_most_recently_used_within_its_entry_budget() {
        let mut c = TreeCache::new(10);
        c.insert(1, tree(4));
        c.insert(2, tree(4));
        assert!(c.get(1).is_some()); // 1 is now the most recently used
        c.insert(3, tree(4)); // 12 entries: 2 goes
        assert!(c.get(2).is_none());
        assert!(c.get(1).is_some() && c.get(3).is_some());
        // A tree over the whole budget is still kept while it is the one in use.
        c.insert(4, tree(25));
        assert!(c.get(4).is_some());
        assert!(c.get(1).is_none() && c.get(3).is_none());
        // Two threads building the same tree: the first one in is the one kept.
        let first = c.insert(5, tree(1));
        assert!(Arc::ptr_eq(&c.insert(5, tree(1)), &first));
    }
}
