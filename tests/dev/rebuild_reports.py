"""Rebuild every committed report from the committed logs, with the command each report quotes.

    python tests/dev/rebuild_reports.py            # every assets/**/report.md
    python tests/dev/rebuild_reports.py bench seed # only reports whose folder name holds a word

Each report's third line reads "Produced by `python tools/report.py ARGS`"; this runs exactly that
from the suite's root (tests/test_assets.py checks that a fresh run gives the same text). Run it
after changing the report code or the logs, then review `git diff assets/`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND = re.compile(r"Produced by `python tools/report\.py (.*?)`")


def main(argv: list[str]) -> int:
    failed = 0
    for report in sorted(ROOT.glob("assets/**/report.md")):
        if argv and not any(word in str(report.parent.relative_to(ROOT)) for word in argv):
            continue
        lines = report.read_text().splitlines()
        found = COMMAND.search(lines[2]) if len(lines) > 2 else None
        if not found:
            print(f"{report.relative_to(ROOT)}: no 'Produced by' command on its third line", file=sys.stderr)
            failed += 1
            continue
        args = shlex.split(found.group(1))
        done = subprocess.run([sys.executable, "tools/report.py", *args], cwd=ROOT,
                              capture_output=True, text=True)
        state = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
        print(f"{report.relative_to(ROOT)}: {state}", flush=True)
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
