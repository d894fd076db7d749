"""Print the numbers of a fuzz run (``FUZZ_OUT/stats.jsonl``) as a Markdown table.

Usage: ``python -m fuzz.stats FUZZ_OUT [--findings]``. One row per target: examples, command
runs (the cache target runs four commands per example), runs as separate processes, seconds,
exit codes and distinct failures; a last row sums them. ``--findings`` lists every distinct
failure instead (command, mutation, exit code, output, where its inputs were kept).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(rows: list[dict]) -> str:
    lines = ["| target | examples | runs | as processes | seconds | exit codes | failures |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(r["exit_codes"].items()))
        lines.append(f"| {r['target']} | {r['examples']} | {r['runs']} | "
                     f"{r['subprocess_runs']} | {r['seconds']:.0f} | {codes} | "
                     f"{r['distinct_failures']} |")
    total = {k: sum(r[k] for r in rows) for k in ("examples", "runs", "subprocess_runs",
                                                    "seconds", "distinct_failures")}
    lines.append(f"| all {len(rows)} targets | {total['examples']} | {total['runs']} | "
                 f"{total['subprocess_runs']} | {total['seconds']:.0f} | | "
                 f"{total['distinct_failures']} |")
    return "\n".join(lines)


def findings(rows: list[dict]) -> str:
    out = []
    for r in sorted(rows, key=lambda r: (r["invariant"], r["target"])):
        output = r["output"].strip()[-600:]
        out.append(f"- **{r['target']}** [{r['invariant']}] {r['mutation']} {r['note']}: "
                   f"{r['detail']}\n  - `{r['command']}` -> exit {r['exit_code']}"
                   f" (seen {r['count']}x; inputs kept in `{r['inputs']}`)\n"
                   + "".join(f"    > {line}\n" for line in output.splitlines()[-6:]))
    return "\n".join(out)


def main(folder: str, show_findings: bool = False) -> None:
    if show_findings:
        path = Path(folder) / "findings.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line] \
            if path.exists() else []
        print(findings(rows) if rows else "no failures")
        return
    path = Path(folder) / "stats.jsonl"
    if not path.exists():
        print(f"{path}: no fuzz statistics (did the run start?)")
        return
    print(table([json.loads(line) for line in path.read_text().splitlines() if line]))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--findings"]
    main(args[0] if args else "fuzz-out", "--findings" in sys.argv[1:])
