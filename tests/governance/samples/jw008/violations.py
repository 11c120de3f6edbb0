"""JW008 violations: print calls."""

import builtins
import functools
import sys

print("starting")  # expect: JW008


def report(value):
    print(value, file=sys.stderr)  # expect: JW008
    return [print(v) for v in value]  # expect: JW008


def indirect(rows):
    builtins.print(rows)  # expect: JW008
    show = print
    show(rows)  # expect: JW008
    list(map(print, rows))  # expect: JW008
    return functools.partial(print, file=sys.stderr)  # expect: JW008
