"""The pass/fail counter shared by the oracle scripts: check() records one
assertion, report() prints the closing "N passed, M failed" line and returns
the exit status (failure also when nothing was checked)."""
import sys

_counts = {"passed": 0, "failed": 0}


def check(cond, what):
    if cond:
        _counts["passed"] += 1
    else:
        _counts["failed"] += 1
        print("FAIL:", what, file=sys.stderr)


def report():
    passed, failed = _counts["passed"], _counts["failed"]
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1
