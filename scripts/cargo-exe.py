#!/usr/bin/env python3
"""Prints the executable cargo built for a target, read from `cargo ... --message-format=json`
on stdin: `cargo test --no-run --message-format=json | scripts/cargo-exe.py cuda_ops`
(the lib's unit-test binary is the crate's name, `smallgrad`)."""
import json
import sys

target = sys.argv[1]
found = ""
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == target:
        found = m["executable"]
if not found:
    sys.exit(f"cargo built no executable for target {target}")
print(found)
