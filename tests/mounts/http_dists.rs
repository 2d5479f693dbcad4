//! dists/ over HTTP (`repofsd --listen`, `vfs::http`), driven by real clients: curl for the
//! bytes, ranges and conditionals (compared with what the mount serves), and headless
//! Chromium for the listing and a mirror's status page (a screenshot; every link in the DOM
//! must resolve, recursively over the whole tree).

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{digest::*, keys::*, mirror::*, net::*, process::*, site::*, world::*};

/// One curl exchange: the last response's status and headers (after redirects, with `-L`),
/// and the body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `curl -s ARGS URL` with a deadline; the body lands in `dir`.
fn curl(dir: &Path, args: &[&str], url: &str) -> Resp {
    let (hdr, body) = (dir.join("curl.headers"), dir.join("curl.body"));
    let _ = fs::remove_file(&body);
    let out = Command::new("curl")
        .args(["-s", "--max-time", "60", "-D"])
        .arg(&hdr)
        .arg("-o")
        .arg(&body)
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&hdr).expect("curl headers");
    // With -L there is one block per response; keep the last.
    let block = text
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()
        .unwrap_or_else(|| panic!("no response from {url}: {text:?}"));
    let mut lines = block.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: fs::read(&body).unwrap_or_default(),
    }
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// Waits until the endpoint's dists/ view lists `name` (it follows the catalog).
fn wait_listed(dir: &Path, port: u16, page: &str, name: &str) {
    wait_for(&format!("{page} to list {name}"), SYNC, || {
        let r = curl(dir, &[], &url(port, page));
        (r.status == 200 && String::from_utf8_lossy(&r.body).contains(name)).then_some(())
    });
}

/// GET and HEAD of a published file and of generated files equal the mount's bytes; ranges,
/// 416, and the conditionals (ETag, Last-Modified, If-Range) behave as RFC 9110 says.
#[test]
fn primary_serves_the_mounts_bytes_with_ranges_and_conditionals() {
    let (s, port) = primary();
    let blob = publish_random(&s, "data-1.0.bin", 2);
    let d = s.w.scratch("curl");
    let bytes = fs::read(&blob).unwrap();
    let sha = sha256_file(&blob);
    let base = url(port, "/dists/hello/data-1.0.bin");

    let got = curl(&d, &[], &base);
    assert_eq!(got.status, 200);
    assert!(got.body == bytes, "GET differs from the published bytes");
    assert!(got.body == fs::read(s.mnt.path("dists/hello/data-1.0.bin")).unwrap());
    let etag = got.header("etag").expect("ETag").to_string();
    assert_eq!(etag, format!("\"{sha}\""));
    let modified = got
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    assert_eq!(got.header("accept-ranges"), Some("bytes"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    let page = curl(&d, &[], &url(port, "/dists/hello/"));
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .header("content-security-policy")
        .is_some_and(|p| p.starts_with("default-src 'none'")));

    let head = curl(&d, &["-I"], &base);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("2097152"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));

    // Generated files and the .torrent: the mount's bytes, ETag from their bytes.
    for name in [
        "SHA256SUMS",
        "MD5SUMS",
        "index.json",
        "data-1.0.bin.torrent",
        "hello-1.0.tar.gz",
        "hello-1.0.tar.gz.sig",
    ] {
        let mounted = fs::read(s.mnt.path(&format!("dists/hello/{name}"))).unwrap();
        let r = curl(&d, &[], &url(port, &format!("/dists/hello/{name}")));
        assert_eq!(r.status, 200, "{name}");
        assert!(r.body == mounted, "{name}: HTTP and the mount differ");
        let tag = format!("\"{}\"", hex(&sha2_of(&mounted)));
        assert_eq!(r.header("etag"), Some(tag.as_str()), "{name}");
        let h = curl(&d, &["-I"], &url(port, &format!("/dists/hello/{name}")));
        assert_eq!(
            h.header("content-length"),
            Some(mounted.len().to_string().as_str())
        );
    }

    // Ranges: bounded, suffix, open; then unsatisfiable.
    for (arg, from, to) in [
        ("100-199", 100, 200),
        ("-500", bytes.len() - 500, bytes.len()),
        ("1000-", 1000, bytes.len()),
    ] {
        let r = curl(&d, &["-r", arg], &base);
        assert_eq!(r.status, 206, "-r {arg}");
        assert!(r.body == bytes[from..to], "-r {arg}: wrong bytes");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {from}-{}/{}", to - 1, bytes.len()).as_str())
        );
    }
    let r = curl(&d, &["-r", "5000000-"], &base);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */2097152"));
    assert_eq!(r.header("x-repofs-reason"), Some("unsatisfiable-range"));
    // Several ranges: the whole body (no multipart).
    let r = curl(&d, &["-r", "0-9,20-29"], &base);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), bytes.len());

    // Conditionals.
    let inm = format!("If-None-Match: {etag}");
    let r = curl(&d, &["-H", &inm], &base);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = curl(&d, &["-H", "If-None-Match: \"something-else\""], &base);
    assert_eq!(r.status, 200);
    let ims = format!("If-Modified-Since: {modified}");
    assert_eq!(curl(&d, &["-H", &ims], &base).status, 304);
    let old = "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT";
    assert_eq!(curl(&d, &["-H", old], &base).status, 200);
    let ir = format!("If-Range: {etag}");
    let r = curl(&d, &["-r", "100-199", "-H", &ir], &base);
    assert_eq!((r.status, r.body.len()), (206, 100));
    let r = curl(&d, &["-r", "100-199", "-H", "If-Range: \"stale\""], &base);
    assert_eq!(r.status, 200, "If-Range mismatch must send the whole file");
    assert!(r.body == bytes);
    let ir = format!("If-Range: {modified}");
    assert_eq!(curl(&d, &["-r", "100-199", "-H", &ir], &base).status, 206);

    // Directories redirect to the slash form; escapes and unknown names are refused.
    let r = curl(&d, &[], &url(port, "/dists/hello"));
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/dists/hello/"));
    for bad in [
        "/dists/hello/%2e%2e/%2e%2e/catalog.sqlite",
        "/dists/hello/..%2f..%2fcatalog.sqlite",
    ] {
        let r = curl(&d, &["--path-as-is"], &url(port, bad));
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.header("x-repofs-reason"), Some("bad-path"));
    }
    let r = curl(
        &d,
        &["--path-as-is"],
        &url(port, "/dists/../catalog.sqlite"),
    );
    assert!(matches!(r.status, 400 | 404), "{}", r.status);
    let r = curl(&d, &[], &url(port, "/dists/hello/nope"));
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-repofs-reason"), Some("not-found"));
    assert_eq!(
        curl(&d, &[], &url(port, "/dists/hello/data-1.0.bin/")).status,
        404
    );
    // A primary's /status lists the store objects refused from seeding: none here.
    assert_eq!(curl(&d, &[], &url(port, "/status")).status, 200);
    let r = curl(&d, &[], &url(port, "/status.json"));
    assert_eq!(r.status, 200);
    let j: serde_json::Value = serde_json::from_slice(&r.body).expect("/status.json");
    assert_eq!(j["corrupt_objects"], serde_json::json!([]), "{j}");

    // A symlink redirects to its target, as the mount resolves it.
    let dd = s.w.scratch("link");
    directive(
        &s.w.gpg,
        ALICE,
        &dd,
        "link-1",
        "version: 1.2\ndirectory: hello\nsymlink: data-1.0.bin data-latest.bin\n",
    );
    s.w.upload("", &[dd.join("link-1.directive.asc")]);
    wait_for("the symlink", Duration::from_secs(30), || {
        s.w.repo
            .symlinks()
            .iter()
            .any(|l| l["name"] == "data-latest.bin")
            .then_some(())
    });
    let link = url(port, "/dists/hello/data-latest.bin");
    let r = curl(&d, &[], &link);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/dists/hello/data-1.0.bin"));
    let r = curl(&d, &["-L"], &link);
    assert!(r.status == 200 && r.body == bytes);
    fs::remove_dir_all(&d).ok();
}

fn sha2_of(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

/// Small files (around `files::WHOLE`, the size read whole with the head) and the index
/// objects, asked by concurrent keep-alive clients: every answer has the published bytes,
/// each client's requests share one connection, and a tag the client holds gets a 304.
#[test]
fn small_files_and_index_objects_under_concurrent_keep_alive_clients() {
    let (s, port) = primary();
    let src = s.w.scratch("small");
    let sizes = [1usize, 4096, 65535, 65536, 65537, 300_000, 4096, 10];
    let names: Vec<String> = (0..sizes.len()).map(|i| format!("small-{i}.bin")).collect();
    fs::create_dir_all(s.incoming().join("hello")).unwrap();
    for (name, size) in names.iter().zip(sizes) {
        sh(&src, &format!("head -c {size} /dev/urandom > {name}"));
        let sig = s.w.gpg.sign(ALICE, &src.join(name), false, &[]);
        fs::copy(
            &sig,
            s.incoming().join("hello").join(sig.file_name().unwrap()),
        )
        .unwrap();
        fs::copy(src.join(name), s.incoming().join("hello").join(name)).unwrap();
    }
    for name in &names {
        wait_for_or(Duration::from_secs(120), || {
            s.w.repo.published("hello", name)
        })
        .unwrap_or_else(|| panic!("{name} not published:\n{}", s.daemon.log()));
    }
    let objects_dir = s.w.repo.root.join("index/objects");
    wait_for("the index root", SYNC, || {
        s.w.repo.root.join("index/root.asc").is_file().then_some(())
    });
    let objects: Vec<String> = fs::read_dir(&objects_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!objects.is_empty());
    let mut wanted: Vec<(String, Vec<u8>)> = names
        .iter()
        .map(|n| (format!("/dists/hello/{n}"), fs::read(src.join(n)).unwrap()))
        .collect();
    for o in &objects {
        let bytes = fs::read(objects_dir.join(o)).unwrap();
        wanted.push((format!("/index/objects/{o}"), bytes));
    }

    // Each client walks the whole list from its own starting point, on one connection.
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let dir = s.w.scratch(&format!("client-{c}"));
            let wanted = wanted.clone();
            std::thread::spawn(move || {
                let mut cmd = Command::new("curl");
                cmd.args([
                    "-s",
                    "--max-time",
                    "60",
                    "-w",
                    "%{http_code} %{num_connects}\n",
                ]);
                let order: Vec<usize> = (0..wanted.len()).map(|i| (i + c) % wanted.len()).collect();
                for (k, &i) in order.iter().enumerate() {
                    cmd.arg(url(port, &wanted[i].0))
                        .arg("-o")
                        .arg(dir.join(k.to_string()));
                }
                let out = cmd.output().expect("curl");
                let said = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(out.status.success(), "client {c}: {said}");
                let lines: Vec<&str> = said.lines().collect();
                assert_eq!(lines.len(), order.len(), "client {c}: {said}");
                let connects: u32 = lines
                    .iter()
                    .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u32>().unwrap())
                    .sum();
                assert_eq!(
                    connects, 1,
                    "client {c} did not keep its connection: {said}"
                );
                for (k, &i) in order.iter().enumerate() {
                    assert!(
                        lines[k].starts_with("200 "),
                        "{}: {}",
                        wanted[i].0,
                        lines[k]
                    );
                    let got = fs::read(dir.join(k.to_string())).unwrap();
                    assert!(
                        got == wanted[i].1,
                        "client {c}: {} has other bytes",
                        wanted[i].0
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }

    // Conditionals: a held tag is a 304 without a body, another tag the bytes.
    let d = s.w.scratch("conditional");
    for (path, bytes) in &wanted {
        let tag = format!("\"{}\"", hex(&sha2_of(bytes)));
        let r = curl(&d, &[], &url(port, path));
        assert_eq!(r.header("etag"), Some(tag.as_str()), "{path}");
        let r = curl(
            &d,
            &["-H", &format!("If-None-Match: {tag}")],
            &url(port, path),
        );
        assert!(r.status == 304 && r.body.is_empty(), "{path}: {}", r.status);
        let r = curl(&d, &["-H", "If-None-Match: \"other\""], &url(port, path));
        assert!(r.status == 200 && r.body == *bytes, "{path}");
    }
    // The index root, which mirrors poll: its bytes' tag, 304 while it is unchanged.
    // (The publisher may sign a new root in between: then the answer is the new bytes.)
    let root_url = url(port, "/index/root.asc");
    wait_for("a 304 for the index root", SYNC, || {
        let root = curl(&d, &[], &root_url);
        let tag = root.header("etag").expect("the root's ETag").to_string();
        assert_eq!(tag, format!("\"{}\"", hex(&sha2_of(&root.body))));
        let r = curl(&d, &["-H", &format!("If-None-Match: {tag}")], &root_url);
        assert!(r.status == 304 || r.body != root.body, "{}", r.status);
        (r.status == 304).then_some(())
    });
}

/// On a mirror a range of a large file fetches only the pieces that cover it.
#[test]
fn a_mirror_range_fetches_only_its_pieces() {
    let (p, port) = primary();
    let blob = publish_random(&p, "large-1.0.bin", 40);
    wait_seeding(&p);
    let sha = sha256_file(&blob);
    let mport = free_port();
    let m = Mirror::start_listening(&p, port, "", Some(mport));
    let d = p.w.scratch("curl-mirror");
    let from = 20u64 << 20;
    let to = from + (1 << 20) - 1;
    let r = curl(
        &d,
        &["-r", &format!("{from}-{to}")],
        &url(mport, "/dists/hello/large-1.0.bin"),
    );
    assert_eq!(r.status, 206, "{}", m.daemon.log());
    let want = &fs::read(&blob).unwrap()[from as usize..=to as usize];
    assert!(r.body == want, "the mirror's range differs");
    assert_eq!(r.header("etag"), Some(format!("\"{sha}\"").as_str()));
    let st = m.status_when("the object in the status", |s| {
        object_status(s, &sha).is_some_and(|o| o["verified_pieces"].as_u64() >= Some(4))
    });
    let o = object_status(&st, &sha).unwrap();
    let down = o["downloaded_bytes"].as_u64().unwrap();
    eprintln!("HTTP 1 MiB range on a mirror: {down} bytes fetched; {o}");
    assert!(
        (1 << 20..=12 << 20).contains(&down),
        "a 1 MiB range fetched {down} bytes"
    );
    assert!(!m.repo.root.join("mirror/complete").join(&sha).exists());
    fs::remove_dir_all(&d).ok();
}

/// A read that fails mid-body (a mirror whose swarm is gone: EIO after `read_timeout`) aborts
/// the response: curl sees a short transfer within the deadline, never a hang, and the
/// endpoint keeps serving what the mirror holds.
#[test]
fn a_dead_swarm_aborts_the_body_within_the_deadline() {
    let (mut p, port) = primary();
    // Larger than librqbit's 32 MiB stream lookahead, so the far end is never fetched.
    let blob = publish_random(&p, "lonely-1.0.bin", 48);
    let mport = free_port();
    let m = Mirror::start_listening(&p, port, "[mirror]\nread_timeout = \"3s\"\n", Some(mport));
    let d = m.repo.dir.path().join("curl-dead");
    fs::create_dir_all(&d).unwrap();
    let link = url(mport, "/dists/hello/lonely-1.0.bin");
    let head = &fs::read(&blob).unwrap()[..4096];
    // While the primary seeds, so that the mirror holds the torrent. A cold first fetch (add
    // the torrent, announce, connect) can outlast the 3 s read_timeout on a loaded machine:
    // that read may be tried again; what this test is about comes after the primary is gone.
    let warm = || {
        Command::new("curl")
            .args(["-sf", "--max-time", "20", "-r", "0-4095", &link])
            .output()
            .ok()
            .filter(|o| o.status.success() && o.stdout == head)
    };
    wait_for_or(Duration::from_secs(60), warm)
        .unwrap_or_else(|| panic!("the mirror never served the head:\n{}", m.daemon.log()));
    let r = curl(&d, &["-r", "0-4095"], &link);
    assert!(r.status == 206 && r.body == head, "{}", m.daemon.log());
    p.daemon.terminate();

    let started = Instant::now();
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .args(["-r", &format!("{}-", 44u64 << 20)])
        .arg(&link)
        .output()
        .expect("curl");
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    // 18: transfer closed with data outstanding; 56: connection reset. Not 28 (timeout).
    assert!(
        matches!(out.status.code(), Some(18) | Some(56)),
        "curl exit {:?} ({said}) after {took:?}",
        out.status.code()
    );
    assert!(said.starts_with("206 "), "{said}");
    assert!(took < Duration::from_secs(15), "aborted after {took:?}");
    assert!(
        m.daemon.log().contains("read failed mid-body"),
        "{}",
        m.daemon.log()
    );
    // A small read the swarm cannot serve is answered before any byte: a 503 with its reason.
    let started = Instant::now();
    let r = curl(
        &d,
        &["-r", &format!("{}-{}", 46u64 << 20, (46u64 << 20) + 4095)],
        &link,
    );
    assert_eq!(r.status, 503, "{}", m.daemon.log());
    assert_eq!(r.header("x-repofs-reason"), Some("read-failed"));
    assert!(started.elapsed() < Duration::from_secs(15));
    // What the mirror holds is still served.
    let r = curl(&d, &["-r", "0-4095"], &link);
    assert!(r.status == 206 && r.body == head);
}

/// headless Chromium, as the brief gives it (deadline: `timeout`).
fn chromium(dir: &Path, args: &[&str], url: &str) -> Vec<u8> {
    let profile = dir.join(format!(
        "profile-{}",
        fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
    ));
    let out = Command::new("timeout")
        .args([
            "90",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (Debian package chromium)");
    assert!(
        out.status.success(),
        "chromium {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::remove_dir_all(&profile);
    out.stdout
}

/// A 1280x900 screenshot of `url`, asserted to be a non-trivial PNG; kept as
/// `$REPOFS_KEEP_SCREENSHOT-NAME.png` when that is set (to look at it).
fn screenshot(dir: &Path, url: &str, name: &str) {
    let png = dir.join(format!("{name}.png"));
    chromium(
        dir,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,900",
        ],
        url,
    );
    let shot = fs::read(&png).expect("screenshot written");
    assert!(shot.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        shot.len() > 20_000,
        "a {} byte screenshot of {url}",
        shot.len()
    );
    if let Ok(keep) = std::env::var("REPOFS_KEEP_SCREENSHOT") {
        fs::copy(&png, format!("{keep}-{name}.png")).ok();
    }
}

/// The `href`s of a serialized DOM (attribute values as Chromium writes them).
fn hrefs(dom: &str) -> Vec<String> {
    dom.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split_once('"'))
        .map(|(h, _)| h.replace("&amp;", "&"))
        .collect()
}

/// `href` resolved against page `base` (an absolute URL of a page ending in `/`).
fn resolve(base: &str, href: &str) -> String {
    let origin_end = base[8..].find('/').map_or(base.len(), |i| i + 8);
    let (origin, path) = base.split_at(origin_end);
    let path = path.split('?').next().unwrap_or(path);
    if let Some(abs) = href.strip_prefix('/') {
        return format!("{origin}/{abs}");
    }
    if href.starts_with('?') {
        return format!("{origin}{path}{href}");
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    parts.pop(); // the page's own last component ("" for a directory)
    for seg in href.split('/') {
        match seg {
            ".." => {
                parts.pop();
            }
            "." => {}
            s => parts.push(s),
        }
    }
    format!("{origin}{}", parts.join("/"))
}

/// Every link on the pages reachable from `start` (within the two endpoints) answers 2xx to
/// HEAD and GET (following redirects); pages are rendered by Chromium, links fetched by curl.
/// Returns the pages' DOMs.
fn crawl(dir: &Path, start: &[String]) -> Vec<(String, String)> {
    let mut pages: VecDeque<String> = start.iter().cloned().collect();
    let mut seen: BTreeSet<String> = start.iter().cloned().collect();
    let mut doms = Vec::new();
    while let Some(page) = pages.pop_front() {
        let dom = String::from_utf8(chromium(dir, &["--dump-dom"], &page)).expect("UTF-8 DOM");
        assert!(dom.contains("</table>"), "{page} rendered no table:\n{dom}");
        for h in hrefs(&dom) {
            let link = resolve(&page, &h);
            if !seen.insert(link.clone()) {
                continue;
            }
            for args in [&["-L", "-I"][..], &["-L"][..]] {
                let r = curl(dir, args, &link);
                assert!(
                    (200..300).contains(&r.status),
                    "{link} (from {page}, href {h:?}) answered {} to curl {args:?}",
                    r.status
                );
            }
            let path = link.splitn(4, '/').nth(3).unwrap_or("");
            if (path.starts_with("dists/") && link.ends_with('/')) || path == "status" {
                pages.push_back(link);
            }
        }
        doms.push((page, dom));
    }
    doms
}

/// The listing in headless Chromium: a screenshot, a name with spaces, `%`, `<` and UTF-8 that
/// round-trips through the listing and its link, signer and sha256 shown, and every link of
/// the primary's tree and of a mirror's status page (and its tree) resolving.
#[test]
fn listings_and_status_in_chromium_every_link_resolves() {
    let (s, port) = primary();
    let odd = "a b%20c<d>é ü.bin";
    let src = s.w.scratch("odd").join(odd);
    fs::write(&src, b"odd name, plain bytes\n").unwrap();
    publish(&s, "hello", &src);
    let nested = s.w.scratch("nested").join("deep-1.0.bin");
    fs::write(&nested, b"nested\n").unwrap();
    publish(&s, "hello/sub", &nested);
    let d = s.w.scratch("chromium");
    wait_listed(&d, port, "/dists/hello/sub/", "deep-1.0.bin");

    // Screenshot of the listing: a real PNG, not a blank page.
    screenshot(&d, &url(port, "/dists/hello/"), "listing");

    // The odd name: escaped in the DOM, and its link fetches its bytes.
    let dom =
        String::from_utf8(chromium(&d, &["--dump-dom"], &url(port, "/dists/hello/"))).unwrap();
    assert!(
        dom.contains("a b%20c&lt;d&gt;é ü.bin"),
        "the odd name is not shown as text:\n{dom}"
    );
    let link = hrefs(&dom)
        .into_iter()
        .find(|h| h.starts_with("a%20b%2520c%3Cd%3E"))
        .unwrap_or_else(|| panic!("no link to the odd name:\n{dom}"));
    let r = curl(&d, &[], &resolve(&url(port, "/dists/hello/"), &link));
    assert_eq!(r.status, 200);
    assert!(r.body == fs::read(&src).unwrap());
    // Signer (the key's user id and fingerprint) and sha256 of a published file.
    assert!(dom.contains("Alice &lt;alice@example.org&gt;"), "{dom}");
    assert!(dom.contains(&s.w.alice), "no signer fingerprint:\n{dom}");
    assert!(dom.contains(&sha256_file(&src)));
    assert!(dom.contains("hello-1.0.tar.gz.torrent"));

    // A mirror of it, serving HTTP too: its status page (HTML and JSON) and listing.
    let mport = free_port();
    let m = Mirror::start_listening(&s, port, "", Some(mport));
    let status = curl(
        &d,
        &["-H", "Accept: application/json"],
        &url(mport, "/status"),
    );
    assert_eq!(status.status, 200);
    let v: Value = serde_json::from_slice(&status.body).expect("status JSON");
    assert!(v["generation"].as_u64().is_some(), "{v}");
    assert_eq!(v["upstream"], format!("http://127.0.0.1:{port}"));
    let j: Value =
        serde_json::from_slice(&curl(&d, &[], &url(mport, "/status.json")).body).unwrap();
    assert_eq!(j["generation"], v["generation"]);

    // Something fetched, so the status page lists an object (linked to its dists/ path).
    let r = curl(&d, &[], &url(mport, "/dists/hello/hello-1.0.tar.gz"));
    assert!(
        r.status == 200 && r.body == fs::read(s.mnt.path("dists/hello/hello-1.0.tar.gz")).unwrap()
    );
    m.status_when("an object in the fetch status", |v| {
        v["objects"].as_array().is_some_and(|o| !o.is_empty())
    });
    wait_for("the status page to name it", SYNC, || {
        let r = curl(&d, &[], &url(mport, "/status"));
        String::from_utf8_lossy(&r.body)
            .contains("href=\"/dists/hello/hello-1.0.tar.gz\"")
            .then_some(())
    });
    screenshot(&d, &url(mport, "/status"), "status");
    let doms = crawl(&d, &[url(port, "/dists/"), url(mport, "/status")]);
    let pages: Vec<&str> = doms.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        url(port, "/dists/hello/sub/"),
        url(mport, "/dists/hello/sub/"),
        url(mport, "/status"),
    ] {
        assert!(
            pages.contains(&want.as_str()),
            "{want} not crawled: {pages:?}"
        );
    }
    let (_, status_dom) = &doms[doms
        .iter()
        .position(|(p, _)| p.ends_with("/status"))
        .unwrap()];
    assert!(status_dom.contains("Mirror status") && status_dom.contains("Generation"));
    // The mirror's listing links its status page.
    let (_, mdom) = doms
        .iter()
        .find(|(p, _)| *p == url(mport, "/dists/hello/"))
        .expect("mirror listing crawled");
    assert!(mdom.contains("href=\"/status\""));
    drop(m);
    fs::remove_dir_all(&d).ok();
}
