#!/usr/bin/env bash
# The demo: emulator -> tap-ad-invoices -> target-csv through Meltano, then what landed.
set -euo pipefail
cd "$(dirname "$0")/.."
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
MELTANO=.venv-meltano/bin/meltano

mkdir -p .meltano
.venv/bin/tap-ad-invoices-emulator --port 8765 > .meltano/emulator.log 2>&1 &
EMULATOR_PID=$!
trap 'kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
.venv/bin/python - <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen("http://127.0.0.1:8765/_emulator/counters", timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("the emulator did not start on 127.0.0.1:8765 (is the port taken?)")
PY

"$MELTANO" install
"$MELTANO" run --no-install tap-ad-invoices target-csv

echo
echo "What landed (one CSV file per stream and run; earlier runs' files stay):"
.venv/bin/python - <<'PY'
import csv, pathlib
from collections import defaultdict
csv.field_size_limit(1 << 30)
runs = defaultdict(list)
for path in sorted(pathlib.Path("output").glob("*.csv")):
    runs[path.stem.rsplit("-", 1)[0]].append(path)
for stream, paths in sorted(runs.items()):
    with paths[-1].open(newline="", encoding="utf-8") as handle:
        rows = sum(1 for _ in csv.DictReader(handle))
    earlier = f"  ({len(paths) - 1} earlier run file(s))" if len(paths) > 1 else ""
    print(f"  {stream:36} {rows:6} rows this run   {paths[-1]}{earlier}")
docs = sorted(p for p in pathlib.Path("output/documents").rglob("*.pdf")) if pathlib.Path("output/documents").exists() else []
if docs:
    print(f"  {'invoice PDFs':40} {len(docs):6} files  output/documents/")
    by_source = defaultdict(int)
    for doc in docs:
        by_source[doc.relative_to("output/documents").parts[0]] += 1
    print("    " + ", ".join(f"{source}: {count}" for source, count in sorted(by_source.items())))
if runs.get("invoices"):
    # The one table every platform feeds, this run: rows per platform and kind.
    with runs["invoices"][-1].open(newline="", encoding="utf-8") as handle:
        kinds = defaultdict(lambda: defaultdict(int))
        for row in csv.DictReader(handle):
            kinds[row["platform"]][row["document_kind"]] += 1
    print("  invoices by platform this run:")
    for platform, counts in sorted(kinds.items()):
        print(f"    {platform:18} " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
PY
echo
echo "State kept by Meltano (the next run is incremental):"
"$MELTANO" state list
