//! The HTML directory pages of dists/ (no JavaScript): directories first, then files,
//! symlinks and generated files, paged at `PAGE_ROWS` rows, each page built from the snapshot
//! plus one catalog query for its files and one for the signers' user IDs. A file of its own
//! because the markup is long and changes for reasons of its own, not HTTP's.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use axum::http::StatusCode;
use percent_encoding::utf8_percent_encode;

use super::{catalog_error, epoch, escape, human, refuse, Dists, Refusal, COMPONENT, STYLE};
use crate::catalog::{Catalog, FileRow};
use crate::vfs::tree::{DistEntry, Snapshot};

/// Rows per listing page: a directory of 100,000 files stays a fast page.
pub const PAGE_ROWS: usize = 1000;

impl Dists {
    /// The HTML listing of dists/`path` (page `page`, 1-based).
    pub(super) fn listing(
        &self,
        cat: &Catalog,
        snap: &Snapshot,
        path: &str,
        page: usize,
    ) -> Result<String, Refusal> {
        let rows = rows(snap, path)?;
        let pages = rows.len().div_ceil(PAGE_ROWS).max(1);
        let page = page.min(pages);
        let shown = &rows[(page - 1) * PAGE_ROWS..(page * PAGE_ROWS).min(rows.len())];
        let table = Table {
            cat,
            snap,
            path,
            files: page_files(cat, path, shown)?,
            userids: userids(cat)?,
            dir_time: fmt_time(self.view_time(snap)),
        };
        let mut h = String::with_capacity(512 + shown.len() * 400);
        head(&mut h, path);
        for (name, e) in shown {
            table.row(&mut h, name, e)?;
        }
        foot(&mut h, page, pages, rows.len(), self.mirror);
        Ok(h)
    }
}

/// The directory's rows: directories first, then everything else, each in the snapshot's
/// (byte) order. A file's .torrent is a link in the file's row, not a row of its own (the
/// snapshot makes `X.torrent` only beside file X, so every Torrent entry has its row).
fn rows<'a>(snap: &'a Snapshot, path: &str) -> Result<Vec<(&'a str, DistEntry)>, Refusal> {
    let children = || {
        snap.dist_children(path)
            .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "not-found", "no such directory"))
    };
    let mut rows: Vec<(&str, DistEntry)> =
        children()?.filter(|(_, e)| *e == DistEntry::Dir).collect();
    rows.extend(children()?.filter(|(_, e)| !matches!(e, DistEntry::Dir | DistEntry::Torrent(_))));
    Ok(rows)
}

/// The catalog rows of the page's published files, by id: one query, as they are a name range.
fn page_files(
    cat: &Catalog,
    path: &str,
    shown: &[(&str, DistEntry)],
) -> Result<HashMap<i64, FileRow>, Refusal> {
    let mut file_names = shown.iter().filter_map(|(n, e)| match e {
        DistEntry::File(_) => Some(*n),
        _ => None,
    });
    Ok(match file_names.next() {
        None => HashMap::new(),
        Some(first) => {
            let last = file_names.next_back().unwrap_or(first);
            cat.published_files_between(path, first, last)
                .map_err(catalog_error)?
                .into_iter()
                .map(|f| (f.id, f))
                .collect()
        }
    })
}

/// Known keys' user IDs by fingerprint (one query), to name a file's signer.
fn userids(cat: &Catalog) -> Result<HashMap<String, String>, Refusal> {
    Ok(cat
        .keys()
        .map_err(catalog_error)?
        .into_iter()
        .filter_map(|k| Some((k.fingerprint, k.userid?)))
        .collect())
}

/// The page up to the table's first row (and the `../` row below dists/ itself).
fn head(h: &mut String, path: &str) {
    let title = format!("/dists/{path}{}", if path.is_empty() { "" } else { "/" });
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Index of {t}</title><style>{STYLE}</style></head><body>\n\
         <h1>Index of {t}</h1>\n<table>\n<thead><tr><th>Name</th><th class=\"n\">Size</th>\
         <th>Modified (UTC)</th><th>SHA-256</th><th>Signer</th><th>Also</th></tr></thead>\n<tbody>\n",
        t = escape(&title)
    );
    if !path.is_empty() {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"../\">../</a></td><td></td><td></td><td></td><td></td><td></td></tr>"
        );
    }
}

/// The table's end, the page links and the entry count.
fn foot(h: &mut String, page: usize, pages: usize, entries: usize, mirror: bool) {
    h.push_str("</tbody></table>\n<footer>");
    if pages > 1 {
        if page > 1 {
            let _ = write!(h, "<a href=\"?page={}\">← previous</a> · ", page - 1);
        }
        let _ = write!(h, "page {page} of {pages}");
        if page < pages {
            let _ = write!(h, " · <a href=\"?page={}\">next →</a>", page + 1);
        }
        h.push_str("<br>");
    }
    let _ = write!(
        h,
        "{} entries · repofs{}</footer>\n</body></html>\n",
        entries,
        if mirror {
            " mirror · <a href=\"/status\">status</a>"
        } else {
            ""
        }
    );
}

/// What rendering a page's rows needs besides the rows.
struct Table<'a> {
    cat: &'a Catalog,
    snap: &'a Snapshot,
    /// The directory, below dists/.
    path: &'a str,
    /// The page's published files (`page_files`).
    files: HashMap<i64, FileRow>,
    /// User IDs by key fingerprint (`userids`).
    userids: HashMap<String, String>,
    /// The time of directories, symlinks and generated files: when the view last changed.
    dir_time: String,
}

impl Table<'_> {
    /// One row of the table.
    fn row(&self, h: &mut String, name: &str, e: &DistEntry) -> Result<(), Refusal> {
        let href = utf8_percent_encode(name, COMPONENT).to_string();
        let esc = escape(name);
        let dir_time = &self.dir_time;
        match e {
            DistEntry::Dir => {
                let _ = writeln!(
                    h,
                    "<tr class=\"d\"><td><a href=\"{href}/\">{esc}/</a></td><td class=\"n\">-</td>\
                     <td class=\"t\">{dir_time}</td><td></td><td></td><td></td></tr>"
                );
            }
            DistEntry::Symlink(target) => {
                let _ = writeln!(
                    h,
                    "<tr><td><a href=\"{href}\">{esc}</a> → {}</td><td class=\"n\">-</td>\
                     <td class=\"t\">{dir_time}</td><td></td><td></td><td></td></tr>",
                    escape(target)
                );
            }
            DistEntry::File(id) => self.file_row(h, name, &href, &esc, *id),
            DistEntry::Generated(g) => {
                let size = self
                    .snap
                    .generated_len(self.cat, self.path, *g)
                    .map_err(catalog_error)?;
                let _ = writeln!(
                    h,
                    "<tr class=\"g\"><td><a href=\"{href}\">{esc}</a></td><td class=\"n\" title=\"{size} bytes\">{}</td>\
                     <td class=\"t\">{dir_time}</td><td></td><td>generated</td><td></td></tr>",
                    human(size)
                );
            }
            DistEntry::Torrent(id) => {
                let size = self.snap.file(*id).map_or(0, |f| {
                    f.torrent_info_len.map_or(0, |l| l.get()) + self.snap.torrent_overhead
                });
                let _ = writeln!(
                    h,
                    "<tr class=\"g\"><td><a href=\"{href}\">{esc}</a></td><td class=\"n\">{}</td>\
                     <td class=\"t\">{dir_time}</td><td></td><td>generated</td><td></td></tr>",
                    human(size)
                );
            }
        }
        Ok(())
    }

    /// A published file's row: its size, publication time, sha256, signer, and links to its
    /// `.sig` and `.torrent` beside it.
    fn file_row(&self, h: &mut String, name: &str, href: &str, esc: &str, id: i64) {
        let (size, time) = self
            .snap
            .file(id)
            .map_or((0, 0), |f| (f.size, f.published_at));
        let row = self.files.get(&id);
        let sha = row.map_or("", |r| r.sha256.as_str());
        let signer = row.map_or(String::new(), |r| {
            let who = escape(&r.uploader);
            match self.userids.get(&r.uploader) {
                Some(uid) => format!("{}<br><span class=\"fpr\">{who}</span>", escape(uid)),
                None => format!("<span class=\"fpr\">{who}</span>"),
            }
        });
        let mut also = String::new();
        if matches!(
            self.sibling(&format!("{name}.sig")),
            Some(DistEntry::File(_))
        ) {
            let _ = write!(also, "<a href=\"{href}.sig\">sig</a> ");
        }
        if matches!(self.sibling(&format!("{name}.torrent")), Some(DistEntry::Torrent(t)) if t == id)
        {
            let _ = write!(also, "<a href=\"{href}.torrent\">torrent</a>");
        }
        let _ = writeln!(
            h,
            "<tr><td><a href=\"{href}\">{esc}</a></td><td class=\"n\" title=\"{size} bytes\">{}</td>\
             <td class=\"t\">{}</td><td><code>{sha}</code></td><td>{signer}</td><td class=\"t\">{also}</td></tr>",
            human(size),
            fmt_time(epoch(time)),
        );
    }

    /// What else is in the directory, by binary search in the snapshot (no catalog).
    fn sibling(&self, name: &str) -> Option<DistEntry> {
        self.snap.dist_entry(&crate::paths::join(self.path, name))
    }
}

/// A listing's time: UTC to the second, `YYYY-MM-DD HH:MM:SS`.
fn fmt_time(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.replace('T', " ").trim_end_matches('Z').to_string()
}
