# N small real .deb files (ar + tar.gz, made here: N dpkg-deb runs take minutes) written to
# DEBS and into the store of ROOT, and their catalog rows written directly as publication
# writes them (files, packages) in directory DIR; repofsd's next start makes their torrents
# and the directory's apt metadata. Shared by bench/apt.sh and bench/apt-mirror.sh.
# Usage: python3 bench/fake-debs.py N DEBS ROOT [DIR=bench/apt]
import hashlib, io, json, os, sqlite3, sys, tarfile, time
n, debs, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
directory = sys.argv[4] if len(sys.argv) > 4 else "bench/apt"
def tgz(members):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w:gz", format=tarfile.GNU_FORMAT) as t:
        for name, data in members:
            i = tarfile.TarInfo(name); i.size = len(data); i.mtime = 1700000000
            t.addfile(i, io.BytesIO(data))
    return b.getvalue()
def ar(members):
    out = b"!<arch>\n"
    for name, data in members:
        out += b"%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (name.encode(), 1700000000, 0, 0, b"100644", len(data))
        out += data + (b"\n" if len(data) % 2 else b"")
    return out
db = sqlite3.connect(os.path.join(root, "catalog.sqlite"))
now = int(time.time())
db.execute("INSERT INTO uploads (state, message, files, directory, uploader, created_at) "
           "VALUES ('accepted', 'bench', '[]', ?, 'bench', ?)", (directory, now))
upload = db.execute("SELECT last_insert_rowid()").fetchone()[0]
for i in range(n):
    name, ver = f"bench-pkg{i:05d}", f"1.{i}-1"
    fields = {"Package": name, "Version": ver, "Architecture": "all",
              "Maintainer": "Bench <bench@example.org>", "Installed-Size": str(4 + i % 100),
              "Depends": f"bench-pkg{(i * 7) % n:05d}", "Section": "misc", "Priority": "optional",
              "Description": f"benchmark package {i}\nA longer description of package {i}\nover two lines."}
    control = "".join(
        f"{k}: " + v.replace("\n", "\n ") + "\n" for k, v in fields.items()).encode()
    deb = ar([("debian-binary", b"2.0\n"), ("control.tar.gz", tgz([("./control", control)])),
              ("data.tar.gz", tgz([(f"./usr/share/{name}/README", b"hi\n")]))])
    fn = f"{name}_{ver}_all.deb"
    open(os.path.join(debs, fn), "wb").write(deb)
    sha, md5 = hashlib.sha256(deb).hexdigest(), hashlib.md5(deb).hexdigest()
    obj = os.path.join(root, "store", "objects", sha[:2], sha)
    os.makedirs(os.path.dirname(obj), exist_ok=True)
    open(obj, "wb").write(deb)
    cur = db.execute(
        "INSERT INTO files (directory, filename, kind, sha256, md5, size, name, version, uploader,"
        " upload_id, published_at, state) VALUES (?, ?, 'package', ?, ?, ?, ?, ?, 'bench', ?, ?,"
        " 'published')", (directory, fn, sha, md5, len(deb), name, ver, upload, now))
    db.execute(
        "INSERT INTO packages (file_id, format, meta_source, name, version, arch, description, depends,"
        " metadata, payload_offset, payload_size, payload_compression, unpacked_size, entry_count)"
        " VALUES (?, 'deb', 'deb', ?, ?, 'all', ?, '[]', ?, 0, 0, 'gzip', 3, 1)",
        (cur.lastrowid, name, ver, fields["Description"].split("\n")[0], json.dumps(fields)))
db.commit()
