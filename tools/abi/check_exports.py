#!/usr/bin/env python3
"""Compares the functions declared in mamba.h with the symbols libmamba exports: every declared function must
be exported, and nothing else may be (no C++ or helper symbols leak into the ABI).
Usage: check_exports.py <mamba.h> <libmamba.so>"""
import re
import subprocess
import sys


def declared(header):
    text = open(header, encoding="utf-8").read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return set(re.findall(r"MAMBA_API\b[^;(]*?\b(mamba_\w+)\s*\(", text))


def exported(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library], check=True, capture_output=True, text=True).stdout
    symbols = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("T", "W", "D", "B", "R"):
            symbols.add(parts[2])
    return symbols


def main():
    header, library = sys.argv[1], sys.argv[2]
    want, have = declared(header), exported(library)
    missing, extra = sorted(want - have), sorted(have - want)
    for name in missing:
        print(f"declared in {header} but not exported: {name}")
    for name in extra:
        print(f"exported but not declared in {header}: {name}")
    print(f"{len(want)} functions declared, {len(have)} symbols exported")
    sys.exit(1 if missing or extra else 0)


if __name__ == "__main__":
    main()
