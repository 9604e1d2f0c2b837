#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The checks every crash test makes after a kill and the recovery (docs/crash-safety.md):
#
#   check-tree.py [--scanned FILE] [--tree LABEL:DIR]... [--bank LABEL:DIR]...
#
# --tree: no leftover of an interrupted write (a name starting with '.#' or '.partial.') at any
#         depth below DIR; symlinks are not followed and other filesystems not entered, as the
#         recovery does.
# --bank: DIR is a copy of a bank's filesystem (debugfs rdump): the same leftover check, and
#         when DIR/bank.json exists the bank is complete: manifest.json with the recorded
#         digest, manifest.sig, format 2: manifest.chunks with every payload's chunk list (its
#         length and the manifest's chunks_sha256), and every payload the record names with its
#         size and SHA-256 (issue 18: a bank's own record never claims content that is gone).
# Prints one line per failed check ("LABEL: ..."); exit 0 either way. --scanned FILE: the
# directories looked at ("LABEL/relative/path") are added to FILE, one a line, for the report.
import hashlib
import json
import os
import stat
import sys

PREFIXES = (".#", ".partial.")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def walk(label, top, scanned):
    """Leftovers at every depth below top (no symlinks followed, one filesystem)."""
    problems = []
    try:
        dev = os.lstat(top).st_dev
    except FileNotFoundError:
        return problems
    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(top, rel) if rel else top
        scanned.add("%s/%s" % (label, rel) if rel else label)
        try:
            names = sorted(os.listdir(path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            sub = os.path.join(rel, name) if rel else name
            st = os.lstat(os.path.join(top, sub))
            if name.startswith(PREFIXES):
                problems.append("%s: left: %s" % (label, sub))
            if stat.S_ISDIR(st.st_mode) and st.st_dev == dev:
                stack.append(sub)
    return problems


def check_chunks(label, top, man):
    """Format 2: manifest.chunks holds each payload's chunk list (docs/banks.md)."""
    try:
        m = json.load(open(man))
    except ValueError:
        return []  # the digest check above reports a manifest.json that is not the record's
    if m.get("format", 1) < 2:
        return []
    path = os.path.join(top, "manifest.chunks")
    if not os.path.isfile(path):
        return ["%s: bank.json exists, manifest.chunks does not" % label]
    table = open(path, "rb").read()
    off = 0
    for p in m.get("payloads", []):
        n = 32 * ((p["size"] + (1 << 20) - 1) >> 20)
        if hashlib.sha256(table[off:off + n]).hexdigest() != p.get("chunks_sha256"):
            return ["%s: manifest.chunks: payload '%s''s chunk list does not match the manifest"
                    % (label, p["name"])]
        off += n
    if off != len(table):
        return ["%s: manifest.chunks has %d bytes, the lists %d" % (label, len(table), off)]
    return []


def check_bank(label, top):
    rec_path = os.path.join(top, "bank.json")
    if not os.path.exists(rec_path):
        return []
    try:
        rec = json.load(open(rec_path))
    except ValueError as e:
        return ["%s: bank.json does not parse: %s" % (label, e)]
    problems = []
    man = os.path.join(top, "manifest.json")
    if not os.path.isfile(man):
        problems.append("%s: bank.json exists, manifest.json does not" % label)
    elif sha256(man) != rec.get("manifest_sha256"):
        problems.append("%s: manifest.json does not have the recorded digest" % label)
    if not os.path.isfile(os.path.join(top, "manifest.sig")):
        problems.append("%s: bank.json exists, manifest.sig does not" % label)
    if os.path.isfile(man):
        problems += check_chunks(label, top, man)
    for p in rec.get("payloads", []):
        path = os.path.join(top, p["name"])
        if not os.path.isfile(path):
            problems.append("%s: bank.json names payload '%s', which is missing" % (label, p["name"]))
        elif os.path.getsize(path) != p["size"] or sha256(path) != p["sha256"]:
            problems.append("%s: payload '%s' is not what bank.json records" % (label, p["name"]))
    return problems


def main(argv):
    scanned_file = None
    problems = []
    scanned = set()
    i = 0
    while i < len(argv):
        opt, val = argv[i], argv[i + 1]
        i += 2
        label, _, top = val.partition(":")
        if opt == "--scanned":
            scanned_file = val
        elif opt == "--tree":
            problems += walk(label, top, scanned)
        elif opt == "--bank":
            problems += walk(label, top, scanned)
            problems += check_bank(label, top)
        else:
            sys.exit("unknown option " + opt)
    for p in problems:
        print(p)
    if scanned_file:
        old = set()
        if os.path.exists(scanned_file):
            old = set(open(scanned_file).read().split("\n")) - {""}
        with open(scanned_file, "w") as f:
            f.write("".join(d + "\n" for d in sorted(old | scanned)))


main(sys.argv[1:])
