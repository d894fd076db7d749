"""Print the numbers of a fuzz run (``FUZZ_OUT/stats.jsonl``) as a Markdown table.

Usage: ``python -m fuzz.stats FUZZ_OUT``. One row per target: examples, command runs (the cache
target runs four commands per example), runs as separate processes, seconds, exit codes and
distinct failures; a last row sums them.
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


def main(folder: str) -> None:
    path = Path(folder) / "stats.jsonl"
    if not path.exists():
        print(f"{path}: no fuzz statistics (did the run start?)")
        return
    print(table([json.loads(line) for line in path.read_text().splitlines() if line]))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz-out")
