"""Builds the Python FAQ retrieval set from the reST sources themselves: every FAQ section whose title is a
question becomes a query, and that section (`file#title`) is the one relevant answer.

Usage: python3 bench/faq_qrels.py FAQ_DIR > faq.qrels.jsonl

FAQ_DIR is the folder that is ingested (`.../_sources/faq`), so IDs are paths relative to it. Titles are
read as reST defines them (a line underlined, and optionally overlined, with one repeated punctuation
character at least as long as the title) and inline markup is reduced to its text (roles, literals,
emphasis, hyperlink references), the way a reader sees the title.
"""
import json
import os
import re
import sys

PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def is_adornment(line):
    s = line.rstrip()
    return len(s) >= 3 and s[0] in PUNCT and s == s[0] * len(s)


def plain(title):
    t = re.sub(r":[\w:+-]+:`([^`<]*?)\s*(<[^>]*>)?`", r"\1", title)  # :role:`text <target>`
    t = re.sub(r"`([^`<]*?)\s*<[^>]*>`__?", r"\1", t)  # `text <url>`_
    t = re.sub(r"``([^`]*)``", r"\1", t)
    t = re.sub(r"`([^`]*)`_?_?", r"\1", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"\1", t)
    t = re.sub(r"\*([^*]+)\*", r"\1", t)
    t = t.replace("~", "") if t.startswith("~") else t
    return " ".join(t.split())


def titles(text):
    lines = text.splitlines()
    out = []
    for i in range(1, len(lines)):
        title, under = lines[i - 1], lines[i]
        if not title.strip() or title.startswith((" ", "\t")) or is_adornment(title):
            continue
        if is_adornment(under) and len(under.rstrip()) >= len(title.rstrip()):
            out.append(plain(title.strip()))
    return out


def main():
    root = sys.argv[1]
    queries, files = [], set()
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            if not name.endswith((".rst", ".rst.txt", ".txt")):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            with open(path, encoding="utf-8") as f:
                for t in titles(f.read()):
                    if t.endswith("?"):
                        files.add(rel)
                        queries.append({"query": t, "relevant": [f"{rel}#{t}"]})
    seen = set()
    for q in queries:
        if q["relevant"][0] in seen:
            continue
        seen.add(q["relevant"][0])
        print(json.dumps(q))
    print(f"faq_qrels: {len(seen)} questions from {len(files)} files", file=sys.stderr)


if __name__ == "__main__":
    main()
