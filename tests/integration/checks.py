"""The check helper of the integration tests: expect() prints one ok/FAIL line
per check and keeps the failures in FAILURES, which the test's exit code
follows."""

FAILURES = []


def expect(cond, what):
    print(("  ok   " if cond else "  FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)
    return cond
