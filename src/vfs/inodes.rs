//! The inode table: which `Node` each inode number the kernel holds stands for.
//!
//! The kernel counts the references it was handed (one per lookup, create, mkdir and
//! readdirplus entry) and gives them back with FORGET when it evicts an inode. A node is
//! dropped when its count returns to zero, so the table holds what the kernel caches, not
//! everything ever listed: a `find` over a million catalog entries does not stay resident.
//! Numbers are never reused, so generation 0 stays true.

use foldhash::{HashMap, HashMapExt};

use super::Node;

pub const ROOT: u64 = 1;

pub struct Inodes {
    by_node: HashMap<Node, u64>,
    slots: HashMap<u64, Slot>,
    next: u64,
}

struct Slot {
    node: Node,
    /// References the kernel holds.
    lookups: u64,
}

impl Inodes {
    pub fn new() -> Inodes {
        let mut t = Inodes {
            by_node: HashMap::new(),
            slots: HashMap::new(),
            next: ROOT,
        };
        t.intern(Node::Root);
        t
    }

    /// The number for `n`, made up if it has none yet.
    pub fn intern(&mut self, n: Node) -> u64 {
        if let Some(&ino) = self.by_node.get(&n) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.slots.insert(
            ino,
            Slot {
                node: n.clone(),
                lookups: 0,
            },
        );
        self.by_node.insert(n, ino);
        ino
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.slots.get(&ino).map(|s| &s.node)
    }

    /// The inodes whose listing or attributes change with the catalog's generation.
    pub fn following_views(&self) -> Vec<u64> {
        let follows = |(&ino, s): (&u64, &Slot)| s.node.follows_views().then_some(ino);
        self.slots.iter().filter_map(follows).collect()
    }

    /// The kernel was handed `ino` once more.
    pub fn remember(&mut self, ino: u64) {
        if let Some(s) = self.slots.get_mut(&ino) {
            s.lookups += 1;
        }
    }

    /// The kernel gave back `n` references to `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(s) = self.slots.get_mut(&ino) {
            s.lookups = s.lookups.saturating_sub(n);
            self.drop_if_unreferenced(ino);
        }
    }

    /// Drops `ino` if the kernel holds no reference to it (a listed entry nobody looked up).
    pub fn drop_if_unreferenced(&mut self, ino: u64) {
        if ino == ROOT || self.slots.get(&ino).is_none_or(|s| s.lookups > 0) {
            return;
        }
        if let Some(s) = self.slots.remove(&ino) {
            if self.by_node.get(&s.node) == Some(&ino) {
                self.by_node.remove(&s.node);
            }
        }
    }

    /// `n` was removed or renamed over: its number, if the kernel still holds it, now names
    /// nothing, and a new file of that name gets a new number.
    pub fn unlink(&mut self, n: &Node) {
        if let Some(ino) = self.by_node.remove(n) {
            if let Some(s) = self.slots.get_mut(&ino) {
                s.node = Node::Gone;
            }
            self.drop_if_unreferenced(ino);
        }
    }

    /// uid `owner`'s spool path `from` (and everything below it) is now `to`: the kernel keeps
    /// the inodes and moves the names, so the nodes move along.
    pub fn rename_spool(&mut self, owner: u32, from: &str, to: &str) {
        self.unlink(&Node::Incoming {
            owner,
            rel: to.to_string(),
        });
        let below = format!("{from}/");
        let moved: Vec<(Node, u64)> = self
            .by_node
            .iter()
            .filter(|(n, _)| {
                matches!(n, Node::Incoming { owner: o, rel } if *o == owner && (rel == from || rel.starts_with(&below)))
            })
            .map(|(n, &i)| (n.clone(), i))
            .collect();
        for (n, ino) in moved {
            self.by_node.remove(&n);
            let Node::Incoming { rel, .. } = n else {
                continue;
            };
            let renamed = Node::Incoming {
                owner,
                rel: format!("{to}{}", &rel[from.len()..]),
            };
            if let Some(s) = self.slots.get_mut(&ino) {
                s.node = renamed.clone();
            }
            self.by_node.insert(renamed, ino);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Node {
        Node::PkgEntry {
            file_id: 1,
            path: path.into(),
        }
    }

    #[test]
    fn nodes_live_while_the_kernel_holds_them() {
        let mut t = Inodes::new();
        let a = t.intern(entry("a"));
        assert_eq!(t.intern(entry("a")), a, "one number per node");
        t.remember(a);
        t.remember(a);
        t.forget(a, 1);
        assert_eq!(t.get(a), Some(&entry("a")));
        t.forget(a, 1);
        assert_eq!(t.get(a), None);
        // Numbers are not reused: the same node comes back under a new one.
        let again = t.intern(entry("a"));
        assert_ne!(again, a);
        // Listed but never looked up: dropped when the listing is.
        t.drop_if_unreferenced(again);
        assert_eq!(t.len(), 1, "only the root is left");
        t.forget(ROOT, 5);
        assert_eq!(t.get(ROOT), Some(&Node::Root));
    }

    #[test]
    fn unlink_and_rename_keep_numbers_with_the_kernel() {
        let mut t = Inodes::new();
        let spool = |rel: &str| Node::Incoming {
            owner: 7,
            rel: rel.into(),
        };
        let dir = t.intern(spool("d"));
        let file = t.intern(spool("d/f"));
        let other = t.intern(spool("g"));
        t.remember(dir);
        t.remember(file);
        t.remember(other);
        // Renaming d over g: g's number names nothing, d's files moved with it.
        t.rename_spool(7, "d", "g");
        assert_eq!(t.get(other), Some(&Node::Gone));
        assert_eq!(t.get(dir), Some(&spool("g")));
        assert_eq!(t.get(file), Some(&spool("g/f")));
        assert_eq!(t.intern(spool("g/f")), file);
        t.forget(other, 1);
        assert_eq!(t.get(other), None);
    }
}
