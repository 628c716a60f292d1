"""How many tests of a JUnit XML report ran, passed, failed and were skipped, and why.

    python3 benchmarks/junit_summary.py REPORT.xml            (the counts, then the skip reasons)
    python3 benchmarks/junit_summary.py REPORT.xml --status   ("ok", or "FAIL (...)": a table cell)

Used by benchmarks/gpu_check.sh for its GPU-tests stage.
"""

from __future__ import annotations

import argparse
import collections
import sys
import xml.etree.ElementTree as ET


def summarise(path: str):
    root = ET.parse(path).getroot()
    cases = root.iter("testcase")
    counts = collections.Counter()
    reasons = collections.Counter()
    for case in cases:
        if case.find("failure") is not None:
            counts["failed"] += 1
        elif case.find("error") is not None:
            counts["errors"] += 1
        elif (skip := case.find("skipped")) is not None:
            counts["skipped"] += 1
            reasons[(skip.get("message") or "").strip()] += 1
        else:
            counts["passed"] += 1
    return counts, reasons


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report")
    ap.add_argument("--status", action="store_true")
    args = ap.parse_args(argv)
    try:
        counts, reasons = summarise(args.report)
    except (OSError, ET.ParseError) as e:
        print(f"FAIL (no report: {e})" if args.status else f"no report: {e}")
        return 0
    total = sum(counts.values())
    if args.status:
        bad = counts["failed"] + counts["errors"]
        print("ok" if bad == 0 and total > 0 else f"FAIL ({bad} of {total} failed)")
        return 0
    print(f"{total} GPU tests: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['errors']} errors, {counts['skipped']} skipped")
    for reason, n in reasons.most_common():
        print(f"  skipped {n}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
