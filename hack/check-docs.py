#!/usr/bin/env python3
"""Checks the docs' cross-references, offline: hack/check-docs.py [REPO_ROOT]

1. Every relative Markdown link in README.md, docs/*.md, deploy/README.md,
   protocol/README.md and protocol/allocations.md names a file or directory of the repository, and its #anchor (if any)
   is a heading of that Markdown file (GitHub's slug rules: lower case, punctuation dropped,
   spaces to hyphens, -1/-2 for repeats).
2. Every path in the layout block of docs/develop.md (first word of each unindented line)
   exists; `src/*.rs` must match at least one file.

Prints one line per broken reference and exits 1 if there is any. External URLs are not
fetched. Run by hack/test.sh.
"""
import glob
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
PAGES = ["README.md", "deploy/README.md", "protocol/README.md", "protocol/allocations.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(text):
    """The lines outside fenced code blocks, with inline code spans blanked."""
    fenced = False
    for n, line in enumerate(text.split("\n"), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, re.sub(r"`[^`]*`", "``", line)


def heading_texts(path):
    """Headings with their inline code restored (prose_lines blanks code spans)."""
    fenced = False
    for line in open(path, encoding="utf-8").read().split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield line


def anchors(path):
    seen, out = {}, set()
    for line in heading_texts(path):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = m.group(1).lower()
        s = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", s)
        s = re.sub(r"[^\w\- ]", "", s).replace(" ", "-")
        k = seen.get(s, 0)
        seen[s] = k + 1
        out.add(s if k == 0 else f"{s}-{k}")
    return out


errors = []
for page in PAGES:
    full = os.path.join(ROOT, page)
    if not os.path.exists(full):
        errors.append(f"{page}: missing")
        continue
    for n, line in prose_lines(open(full, encoding="utf-8").read()):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto: ...
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(full), path)) if path else full
            if not dest.startswith(ROOT + os.sep) and dest != ROOT:
                errors.append(f"{page}:{n}: {target}: outside the repository")
            elif not os.path.exists(dest):
                errors.append(f"{page}:{n}: {target}: no such file")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                errors.append(f"{page}:{n}: {target}: no heading #{anchor} in {os.path.relpath(dest, ROOT)}")

layout, inside = os.path.join(ROOT, "docs/develop.md"), False
lines = open(layout, encoding="utf-8").read().split("\n")
start = lines.index("## Layout") if "## Layout" in lines else None
if start is None:
    errors.append("docs/develop.md: no '## Layout' section")
else:
    fenced = False
    for n, line in enumerate(lines[start + 1 :], start + 2):
        if FENCE.match(line):
            if fenced:
                break
            fenced = True
            continue
        if not fenced or not line or line[0].isspace():
            continue
        word = line.split()[0]
        if not glob.glob(os.path.join(ROOT, word)):
            errors.append(f"docs/develop.md:{n}: layout names {word}, which does not exist")

for e in errors:
    print(f"check-docs: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
