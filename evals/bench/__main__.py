"""`python -m evals.bench [SCENARIO ...]`: run benchmark scenarios and write BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from evals.bench import SCENARIOS

REPO = Path(__file__).resolve().parents[2]
MARK = "<!-- bench:{name} -->"


def machine() -> str:
    """nproc, CPU model and Python, for the report header."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = found.group(1) if found else cpu
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def merge(existing: str, name: str, section: str) -> str:
    """Replace one scenario's section between its markers, or append it."""
    start, end = MARK.format(name=name), MARK.format(name=f"/{name}")
    block = f"{start}\n{section.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    return (
        pattern.sub(lambda _: block, existing)
        if pattern.search(existing)
        else existing.rstrip() + "\n\n" + block + "\n"
    )


def with_stamp(text: str, stamp: str) -> str:
    """Set the "Last run:" line, adding it when missing."""
    if "Last run:" in text:
        return re.sub(r"^Last run: .*$", stamp, text, flags=re.MULTILINE)
    return text.rstrip() + f"\n\n{stamp}\n"


def main() -> None:
    """Run the named scenarios (all by default) and update their sections of BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    args.scenarios = args.scenarios or list(SCENARIOS)
    text = (
        args.out.read_text()
        if args.out.exists()
        else "# Benchmarks\n\nProduced by `make bench` (`python -m evals.bench`).\n"
    )
    stamp = f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}."
    failed = []
    for name in args.scenarios:
        module = importlib.import_module(f"evals.bench.{name}")
        started = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            section = module.run()
        except Exception as exc:  # one broken scenario must not hide the others' numbers
            failed.append(name)
            section = f"## {name}\n\nFailed: {type(exc).__name__}: {exc}"
        section += (
            f"\n\n_Scenario `{name}` took {time.monotonic() - started:.0f} s; command: `python -m evals.bench {name}`._"
        )
        # Re-read first: a scenario can run for many minutes while another run updates other sections.
        if args.out.exists():
            text = args.out.read_text()
        text = merge(with_stamp(text, stamp), name, section)
        args.out.write_text(text)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
