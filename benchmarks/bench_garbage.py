"""Garbage in costs about what parsing costs: 1,000,000 bad JSON Lines through `newsletter ingest`.

Run from the repository root: `python benchmarks/bench_garbage.py [--lines N] [--runs R]`.
Prints, for a file of N lines of broken JSON (`{not json 17`):
- the whole `newsletter ingest` command (a real process: read, parse, 20 warnings
  and `… and N more like these`, the table), its time and peak memory;
- the parser alone, against the naive way in the same run: every line through the
  JSON decoder and every warning formatted and kept (what ingest did before);
- for scale, parsing N/10 good lines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.sources import parse_bytes  # noqa: E402


def best_of(runs: int, work) -> tuple[float, float, object]:
    """(fastest, slowest) of `runs` timings, and the last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), max(times), result


def naive(text: str, name: str) -> list[str]:
    """Every line through the decoder, every warning kept: the cost of diagnosing all of them."""
    decode, warnings = json.JSONDecoder().decode, []
    for number, line in enumerate(text.split("\n"), 1):
        if line:
            try:
                decode(line)
            except json.JSONDecodeError as error:
                warnings.append(f"{name}:{number}: invalid JSON: {error.msg} (column {error.colno})")
    return warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    garbage = "".join(f"{{not json {n}\n" for n in range(args.lines)).encode()
    good_lines = max(args.lines // 10, 1)
    good = "".join(json.dumps({"title": f"Paper {n}", "abstract": "An abstract."}) + "\n" for n in range(good_lines)).encode()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "garbage.jsonl"
        path.write_bytes(garbage)
        (Path(folder) / "config.toml").write_text('[newsletter]\nfrom = "p@example.org"\nbase_url = "http://127.0.0.1"\n')
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        timings = []
        for _ in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "newsletter", "--db", str(Path(folder) / "g.db"), "ingest", str(path)],
                                  cwd=folder, env=env, capture_output=True, text=True)
            timings.append(time.perf_counter() - start)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        lines = done.stderr.count("\n")
        print(f"newsletter ingest, {args.lines:,} bad lines: {min(timings):.2f}–{max(timings):.2f} s, "
              f"peak {peak_mb:.0f} MB, {lines} warning lines, exit {done.returncode}")
        print("  last warning:", done.stderr.strip().splitlines()[-1])

    low, high, result = best_of(args.runs, lambda: parse_bytes(garbage, "jsonl", name="garbage.jsonl"))
    assert result.warning_count == args.lines and len(result.warnings) == 21
    text = garbage.decode()
    naive_low, naive_high, _ = best_of(args.runs, lambda: naive(text, "garbage.jsonl"))
    good_low, good_high, parsed = best_of(args.runs, lambda: parse_bytes(good, "jsonl", name="good.jsonl"))
    assert len(parsed.papers) == good_lines
    print(f"parse {args.lines:,} bad lines: {low:.2f}–{high:.2f} s; naive (decode and keep every warning): "
          f"{naive_low:.2f}–{naive_high:.2f} s ({naive_low / low:.1f}× slower)")
    print(f"parse {good_lines:,} good lines, for scale: {good_low:.2f}–{good_high:.2f} s "
          f"(≈ {good_low * args.lines / good_lines:.1f} s per {args.lines:,})")


if __name__ == "__main__":
    main()
