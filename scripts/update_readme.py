"""Regenerate the README's settings table from `tap-ad-invoices --about --format=markdown`.

Usage: python scripts/update_readme.py [--check]
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"
# Settings every SDK tap has; the SDK documents them.
BUILTIN = re.compile(r"^\| (stream_maps|stream_map_config|faker_config|flattening_|batch_config)")


def settings_table() -> str:
    about = subprocess.run(
        [sys.executable, "-m", "tap_ad_invoices", "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    section = about.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = [
        line
        for line in section.strip().splitlines()
        if line.startswith("|") and not BUILTIN.match(line)
    ]
    return "\n".join(rows)


def main() -> int:
    text = README.read_text(encoding="utf-8")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    updated = f"{before}{START}\n{settings_table()}\n{END}{after}"
    if "--check" in sys.argv:
        if updated != text:
            print("README settings table is stale: run python scripts/update_readme.py")
            return 1
        return 0
    README.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
