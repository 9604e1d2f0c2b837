#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Re-sign a bundle with an edited manifest, for tests: the hostile-but-validly-signed cases.

usage: craft-bundle.py IN.bbi OUT.bbi PKI_DIR [--signer NAME] [--format1] EDIT...

Each EDIT changes the manifest bytes of IN before they are signed again:
  replace:OLD=>NEW    replace the first occurrence of OLD by NEW (must occur)
  digest:NAME:first|last
                      change the first or last hex digit of payload NAME's digest (format 2:
                      chunks_sha256, the digest of its chunk list, which verifiers check; format
                      1: sha256) to another lower-case hex digit, so the digest differs from
                      the real one in one byte
  upper:NAME          write payload NAME's sha256 in upper case (same digest, other spelling)
  append:TEXT         append TEXT after the manifest's bytes (\\n, \\t, \\s for a space)
  prepend:TEXT        put TEXT before them
--format1 makes the format-1 bundle of the same content (what image build wrote before issue
15): "format": 1 in the header and the manifest, no chunks_sha256, no chunk table (the file
ends at the end of the last payload); edits apply after that.
The payloads are copied unchanged at their offsets: the new manifest and signature must fit
before IN's first payload (the builder leaves 1 KiB of room). The signature is made with
`openssl cms -sign -binary` by PKI_DIR/NAME (default: signer, with intermediate.crt), the shape
docs/signing.md says a verifier accepts; the header is re-encoded with its checksum.
"""
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

MAGIC = b"\x89BBI\r\n\x1a\n"


def unescape(s):
    return s.replace("\\n", "\n").replace("\\t", "\t").replace("\\s", " ").encode()


def digest_at(manifest, at):
    """Where the digest of the payload whose name is at `at` starts (either format)."""
    end = manifest.find(b"}", at)
    for key in (b'"chunks_sha256": "', b'"sha256": "'):
        i = manifest.find(key, at, end)
        if i >= 0:
            return i + len(key)
    sys.exit("craft-bundle: no digest after the payload's name")


def edit(manifest, spec):
    kind, _, rest = spec.partition(":")
    if kind == "replace":
        old, sep, new = rest.partition("=>")
        if not sep:
            sys.exit(f"craft-bundle: {spec!r}: expected replace:OLD=>NEW")
        old, new = unescape(old), unescape(new)
        if old not in manifest:
            sys.exit(f"craft-bundle: {old!r} is not in the manifest")
        return manifest.replace(old, new, 1)
    if kind == "digest":
        name, _, where = rest.partition(":")
        at = manifest.find(b'"name": "%s"' % name.encode())
        if at < 0:
            sys.exit(f"craft-bundle: no payload {name!r}")
        key = digest_at(manifest, at)
        i = key if where == "first" else key + 63
        c = chr(manifest[i])
        n = "0123456789abcdef"[("0123456789abcdef".index(c) + 1) % 16]
        return manifest[:i] + n.encode() + manifest[i + 1:]
    if kind == "upper":
        at = manifest.find(b'"name": "%s"' % rest.encode())
        if at < 0:
            sys.exit(f"craft-bundle: no payload {rest!r}")
        key = digest_at(manifest, at)
        digest = manifest[key:key + 64]
        if digest.upper() == digest:
            sys.exit("craft-bundle: the digest has no letter to upper-case")
        return manifest[:key] + digest.upper() + manifest[key + 64:]
    if kind == "append":
        return manifest + unescape(rest)
    if kind == "prepend":
        return unescape(rest) + manifest
    sys.exit(f"craft-bundle: unknown edit {spec!r}")


def main():
    args = sys.argv[1:]
    signer = "signer"
    format1 = "--format1" in args
    if format1:
        args.remove("--format1")
    if "--signer" in args:
        i = args.index("--signer")
        signer = args[i + 1]
        del args[i:i + 2]
    src, dst, pki, edits = args[0], args[1], args[2], args[3:]
    with open(src, "rb") as f:
        hdr = f.read(128)
        if hdr[:8] != MAGIC:
            sys.exit("craft-bundle: not a bundle")
        fmt, hsize, moff, msize, soff, ssize, poff, flags = struct.unpack("<IIQQQQQQ", hdr[8:64])
        f.seek(moff)
        manifest = f.read(msize)
        end = os.fstat(f.fileno()).st_size
    if format1:
        if fmt != 2 or b'"format": 2,' not in manifest:
            sys.exit("craft-bundle: --format1 wants a format-2 bundle")
        fmt = 1
        manifest = manifest.replace(b'"format": 2,', b'"format": 1,', 1)
        manifest = re.sub(rb',\s*"chunks_sha256": "[0-9a-f]{64}"', b"", manifest)
        end = max(int(o) + int(n) for n, o in
                  re.findall(rb'"size": ([0-9]+),\s*"offset": ([0-9]+)', manifest))
    for e in edits:
        manifest = edit(manifest, e)
    with tempfile.TemporaryDirectory() as tmp:
        mpath = os.path.join(tmp, "manifest")
        with open(mpath, "wb") as f:
            f.write(manifest)
        cmd = ["openssl", "cms", "-sign", "-binary", "-md", "sha256", "-in", mpath,
               "-signer", os.path.join(pki, signer + ".crt"),
               "-inkey", os.path.join(pki, signer + ".key"), "-outform", "DER"]
        if os.path.exists(os.path.join(pki, "intermediate.crt")) and signer == "signer":
            cmd += ["-certfile", os.path.join(pki, "intermediate.crt")]
        sig = subprocess.run(cmd, check=True, capture_output=True,
                             env=dict(os.environ, OPENSSL_CONF="/dev/null")).stdout
    sig_end = 128 + len(manifest) + len(sig)
    if sig_end > poff or poff - sig_end > 64 * 1024:
        sys.exit(f"craft-bundle: manifest + signature ({sig_end} bytes) do not fit before {poff}")
    fields = struct.pack("<IIQQQQQQ", fmt, hsize, 128, len(manifest), 128 + len(manifest),
                         len(sig), poff, flags)
    head = MAGIC + fields
    head += hashlib.sha256(head).digest() + bytes(32)
    with open(src, "rb") as fin, open(dst + ".tmp", "wb") as fout:
        fout.write(head + manifest + sig + bytes(poff - sig_end))
        fin.seek(poff)
        left = end - poff
        while left > 0:
            block = fin.read(min(left, 1 << 20))
            if not block:
                sys.exit("craft-bundle: IN is shorter than its manifest says")
            fout.write(block)
            left -= len(block)
    os.replace(dst + ".tmp", dst)


if __name__ == "__main__":
    main()
