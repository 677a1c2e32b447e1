#!/usr/bin/env python3
"""Checks that the documentation points at things that exist.

Over README.md and every Markdown file under docs/ (plus the READMEs of src/ops, kernels,
cuda-sim and the bundled data), it checks:

  * every relative Markdown link `[text](path)` / `[text](path#anchor)` / `![alt](path)`
    resolves to a file or folder, and an `#anchor` into a Markdown file names one of its
    headings (GitHub's slug rules: lower case, punctuation dropped, spaces to hyphens);
  * every code-span path into the repository — `src/...`, `tests/...`, `examples/...`,
    `benches/...`, `scripts/...`, `kernels/...`, `cuda-sim/...`, `docs/...`, `data/...` —
    exists, from the repository root or from the file's folder (a trailing `:line`, `::item` or `#anchor` is ignored; globs and placeholders
    such as `*` or `<name>` are skipped).

Web links (http, https, mailto) are not fetched: CI has no network beyond the registries.

  python3 scripts/check-links.py            # check the repository; exit 1 on a broken link
  python3 scripts/check-links.py --self-test # prove the checker catches what it claims to
"""

import os
import re
import sys
import tempfile

FILES = ["README.md", "src/ops/README.md", "kernels/README.md", "cuda-sim/README.md",
         "data/fashion-mnist-subset/README.md"]
TREES = ["docs"]
ROOTS = ("src", "tests", "examples", "benches", "scripts", "kernels", "cuda-sim", "docs", "data")

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
CODE = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^(```|~~~)")


def markdown_files(root):
    out = [os.path.join(root, f) for f in FILES if os.path.exists(os.path.join(root, f))]
    for tree in TREES:
        for d, _, names in os.walk(os.path.join(root, tree)):
            out += [os.path.join(d, n) for n in sorted(names) if n.endswith(".md")]
    return out


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[`*_~]", "", s)
    s = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", s)
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    in_fence = False
    for line in open(path, encoding="utf-8"):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        m = None if in_fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks."""
    in_fence = False
    for i, line in enumerate(open(path, encoding="utf-8"), 1):
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield i, line


def check_file(root, path):
    problems = []
    here = os.path.dirname(path)
    rel = os.path.relpath(path, root)
    for no, line in prose_lines(path):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(here, file_part)) if file_part else path
            if not os.path.exists(dest):
                problems.append(f"{rel}:{no}: link to {target}: {os.path.relpath(dest, root)} does not exist")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                problems.append(f"{rel}:{no}: link to {target}: no heading #{anchor} in {os.path.relpath(dest, root)}")
        for span in CODE.findall(line):
            span = span.strip()
            if not span.startswith(tuple(r + "/" for r in ROOTS)) or " " in span:
                continue
            if re.search(r"[*<>{}$]|\.\.\.", span):
                continue
            p = re.split(r"::|#|:(?=\d)", span)[0].rstrip(".,;)")
            if not (os.path.exists(os.path.join(root, p)) or os.path.exists(os.path.join(here, p))):
                problems.append(f"{rel}:{no}: `{span}`: {p} does not exist")
    return problems


def check(root):
    problems = []
    files = markdown_files(root)
    for f in files:
        problems += check_file(root, f)
    return files, problems


def self_test():
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "docs"))
        os.makedirs(os.path.join(root, "src"))
        open(os.path.join(root, "src", "lib.rs"), "w").close()
        open(os.path.join(root, "docs", "b.md"), "w").write("# A heading, with `code`\n## Twice\n## Twice\n")
        open(os.path.join(root, "README.md"), "w").write(
            "[ok](docs/b.md) [ok](docs/b.md#a-heading-with-code) [ok](docs/b.md#twice-1) [web](https://x.y/z)\n"
            "`src/lib.rs` `src/lib.rs:12` `src/*.rs` `src/lib.rs::Tensor`\n"
            "```\n[not a link](nowhere.md) `src/in_a_fence.rs`\n```\n"
            "[broken](docs/missing.md) [bad anchor](docs/b.md#nope) `src/gone.rs` ![img](docs/x.svg)\n")
        _, problems = check(root)
        expected = ["docs/missing.md", "#nope", "src/gone.rs", "docs/x.svg"]
        for e in expected:
            assert any(e in p for p in problems), f"self-test: {e} not reported in {problems}"
        assert len(problems) == len(expected), f"self-test: false alarms in {problems}"
    print("check-links self-test: the 4 planted broken references are reported, nothing else")


def main():
    if "--self-test" in sys.argv:
        self_test()
        return 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files, problems = check(root)
    for p in problems:
        print(p)
    print(f"check-links: {len(files)} Markdown files, {len(problems)} broken reference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
