#!/usr/bin/env python3
"""Hand-crafted tar archives with the numeric-field oddities real archivers write (for
scripts/corpus). EDGE_DIR gets archives GNU tar reads (it is the reference for how each field
must be read); REJECT_DIR gets corrupt ones GNU tar refuses.

usage: corpus-edge.py EDGE_DIR REJECT_DIR
"""
import os
import sys

MTIME = 1700000000


def octal(v, n):
    """The usual form: zero-padded octal, NUL-terminated."""
    return b"%0*o\0" % (n - 1, v)


def spaces(v, n):
    """Right-aligned with leading spaces, space-terminated (old Unix tars)."""
    return (b"%o" % v).rjust(n - 1) + b" "


def nul_padded(v, n):
    """Left-aligned digits, the rest NULs."""
    return (b"%o" % v).ljust(n, b"\0")


def base256(v, n):
    """GNU's binary form: first byte 0x80 (0xff for negative), two's complement big-endian."""
    b = (v % (1 << (8 * n))).to_bytes(n, "big")
    return bytes([0xFF if v < 0 else 0x80]) + b[1:]


def header(name, size=0, kind=b"0", mode=0o644, uid=0, gid=0, mtime=MTIME, link=b"",
           uname=b"root", gname=b"root", magic=b"ustar\x0000", raw=None, bad_sum=False):
    """One 512-byte header; `raw` overrides fields by offset with exact bytes."""
    h = bytearray(512)

    def put(off, n, v):
        if isinstance(v, int):
            v = octal(v, n)
        assert len(v) <= n, (off, v)
        h[off:off + len(v)] = v

    put(0, 100, name)
    put(100, 8, mode)
    put(108, 8, uid)
    put(116, 8, gid)
    put(124, 12, size)
    put(136, 12, mtime)
    h[156:157] = kind
    put(157, 100, link)
    h[257:265] = magic
    put(265, 32, uname)
    put(297, 32, gname)
    put(329, 8, 0)
    put(337, 8, 0)
    for off, v in (raw or {}).items():
        h[off:off + len(v)] = v
    h[148:156] = b" " * 8
    s = sum(h) + (1 if bad_sum else 0)
    h[148:156] = b"%06o\0 " % s
    return bytes(h)


def member(name, data=b"", **kw):
    pad = b"\0" * (-len(data) % 512)
    return header(name, size=len(data), **kw) + data + pad


def archive(path, *members):
    body = b"".join(members) + b"\0" * 1024
    body += b"\0" * (-len(body) % 10240)
    with open(path, "wb") as f:
        f.write(body)


def main():
    edge, reject = sys.argv[1], sys.argv[2]
    os.makedirs(edge, exist_ok=True)
    os.makedirs(reject, exist_ok=True)
    text = b"numeric fields\n"

    # uid/gid left NUL-filled, as npm (node-tar) and cargo write them, and likewise a
    # file's mtime: GNU tar reads each as 0. (The size field is strict in repofs: it says
    # where the next header is, so an empty one is not guessed at, even on a directory.)
    t = b"edge-empty-1.0/"
    archive(f"{edge}/edge-empty-1.0.tar",
            member(t, kind=b"5", mode=0o755,
                   raw={108: b"\0" * 8, 116: b"\0" * 8}),
            member(t + b"file", text, raw={108: b"\0" * 8, 116: b"\0" * 8}),
            member(t + b"nouser", text, uname=b"", gname=b"", raw={108: b"\0" * 8}),
            member(t + b"epoch", text, raw={136: b"\0" * 12}))

    # Leading spaces and a space terminator in every numeric field.
    t = b"edge-spaces-1.0/"
    sp = lambda size, mode=0o644: {100: spaces(mode, 8), 108: spaces(1000, 8),
                                   116: spaces(100, 8), 124: spaces(size, 12),
                                   136: spaces(MTIME, 12)}
    archive(f"{edge}/edge-spaces-1.0.tar",
            member(t, kind=b"5", mode=0o755, raw=sp(0, 0o755)),
            member(t + b"file", text, raw=sp(len(text))),
            member(t + b"run", b"#!/bin/sh\n", raw=sp(10, 0o755)))

    # Digits first, NULs after (no leading zeros, no space).
    t = b"edge-nul-1.0/"
    nl = lambda size, mode=0o644: {100: nul_padded(mode, 8), 108: nul_padded(1001, 8),
                                   116: nul_padded(1002, 8), 124: nul_padded(size, 12),
                                   136: nul_padded(MTIME + 5, 12)}
    archive(f"{edge}/edge-nul-1.0.tar",
            member(t, kind=b"5", mode=0o755, raw=nl(0, 0o755)),
            member(t + b"file", text, raw=nl(len(text))),
            member(t + b"link", kind=b"2", link=b"file", raw=nl(0, 0o777)))

    # Base-256 (binary) numbers: a uid and gid past 0o7777777, a size, an mtime past
    # 0o77777777777 (year 2242) and a negative one (1969), as GNU tar writes them.
    t = b"edge-base256-1.0/"
    archive(f"{edge}/edge-base256-1.0.tar",
            member(t, kind=b"5", mode=0o755),
            member(t + b"bigids", text, magic=b"ustar  \0",
                   raw={108: base256(3000000, 8), 116: base256(4000000, 8)}),
            member(t + b"size", text, raw={124: base256(len(text), 12)}),
            member(t + b"future", text, raw={136: base256(1 << 33, 12)}),
            member(t + b"past", text, raw={136: base256(-86400 * 100, 12)}))

    # Odd names and device fields: a uname filling all 32 bytes (no NUL), a gname that is not
    # UTF-8, an unknown user, and device numbers (meaningless for files) left as junk.
    t = b"edge-names-1.0/"
    archive(f"{edge}/edge-names-1.0.tar",
            member(t, kind=b"5", mode=0o755, uname=b"u" * 32, gname=b"g" * 32),
            member(t + b"file", text, uid=4242, gid=4343, uname=b"no-such-user-here",
                   gname=b"\xff\xfe-grp"),
            member(t + b"dev", text, raw={329: b"        ", 337: b"\0\0\0\0\0\0\0\0"}),
            member(t + b"junk", text, raw={329: b"12345678", 337: b"\xff\xff\xff\xff"}))

    # Corrupt: a header checksum off by one; a size field that is not a number.
    t = b"reject-checksum-1.0/"
    archive(f"{reject}/reject-checksum-1.0.tar",
            member(t, kind=b"5", mode=0o755, bad_sum=True),
            member(t + b"file", text))
    t = b"reject-size-1.0/"
    archive(f"{reject}/reject-size-1.0.tar",
            member(t, kind=b"5", mode=0o755),
            member(t + b"file", text, raw={124: b"0000001x234\0"}))


if __name__ == "__main__":
    main()
