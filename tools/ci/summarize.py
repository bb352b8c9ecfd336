#!/usr/bin/env python3
"""Counts test results from CTest's JUnit XML and the NUnit runner's TRX files under a folder and prints
one line: 'N passed, N failed, N skipped'. Exits 1 when a test failed or no test ran."""
import glob
import os
import sys
import xml.etree.ElementTree as ET


def junit_counts(path):
    passed = failed = skipped = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        status = case.get("status", "")
        if case.find("failure") is not None or case.find("error") is not None or status == "fail":
            failed += 1
        elif case.find("skipped") is not None or status in ("notrun", "skipped", "disabled"):
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def trx_counts(path):
    root = ET.parse(path).getroot()
    ns = {"t": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    passed = failed = skipped = 0
    for result in root.iter(("{%s}" % ns["t"] if ns else "") + "UnitTestResult"):
        outcome = result.get("outcome", "")
        if outcome == "Passed":
            passed += 1
        elif outcome in ("Failed", "Error", "Timeout", "Aborted"):
            failed += 1
        else:
            skipped += 1
    return passed, failed, skipped


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "artifacts/test-results"
    totals = [0, 0, 0]
    files = sorted(glob.glob(os.path.join(folder, "**", "*.xml"), recursive=True))
    trx = sorted(glob.glob(os.path.join(folder, "**", "*.trx"), recursive=True))
    for path in files:
        for i, n in enumerate(junit_counts(path)):
            totals[i] += n
    for path in trx:
        for i, n in enumerate(trx_counts(path)):
            totals[i] += n
    print(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    sys.exit(1 if totals[1] > 0 or totals[0] == 0 else 0)


if __name__ == "__main__":
    main()
