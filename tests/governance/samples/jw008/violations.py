"""JW008 violations: print calls."""

import sys

print("starting")  # expect: JW008


def report(value):
    print(value, file=sys.stderr)  # expect: JW008
    return [print(v) for v in value]  # expect: JW008
