#!/usr/bin/env python3
"""Fails when an end-to-end test sleeps where it should wait for a condition.

A fixed sleep used as a wait (for a fill, a log line, a lease's end) hopes the race goes well: on a
loaded host it looks too early, and the test fails now and then. Outside tests/e2e/support/, every
`sleep`, `sleep_until` or `thread::sleep` call under tests/e2e/ must say, in a `// pacing:` comment
on the line before it (or on its own line, or the line after), why it is not such a wait: a flood
that sends a call every 20 ms, or a wait until a wall-clock instant (a TTL's end) has passed.

Usage: check-e2e-sleeps.py [DIR]   (default: tests/e2e, from the repository's root)
"""

import pathlib
import re
import sys

# A call of any sleep: `tokio::time::sleep(`, `sleep_until(`, `std::thread::sleep(`, or a bare
# imported `sleep(`; not a longer name such as `sleep_until_opt`.
SLEEP = re.compile(r"\b(?:sleep|sleep_until)\s*\(")
PACING = "// pacing:"

FIX = """\
  Wait for the condition instead, with a bound:
      support::wait::until(bound, "what is awaited", || probe, |seen| done(seen)).await
  or, if this sleep paces load or waits for a wall-clock instant (not for a condition), say why
  on the line before it:
      // pacing: <why this is not a wait for a condition>"""


def code_of(line):
    """The line without its `//` comment and the insides of its string literals."""
    code = []
    in_string = escaped = False
    for i, c in enumerate(line):
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
                code.append(c)
            continue
        if line.startswith("//", i):
            break
        # A string opens at a quote that is not the character literal '"'.
        if c == '"' and not (line[i - 1 : i] == "'" and line[i + 1 : i + 2] == "'"):
            in_string = True
        code.append(c)
    return "".join(code)


def comment_block_above(lines, i):
    """The comments right above line `i`, one per line, nearest first."""
    j = i - 1
    while j >= 0 and lines[j].lstrip().startswith("//"):
        yield lines[j]
        j -= 1


def explained(lines, i):
    if PACING in lines[i]:
        return True
    if any(PACING in c for c in comment_block_above(lines, i)):
        return True
    return i + 1 < len(lines) and lines[i + 1].lstrip().startswith(PACING)


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/e2e")
    if not root.is_dir():
        sys.exit(f"{root}: no such directory")
    support = root / "support"
    found = []
    for path in sorted(root.rglob("*.rs")):
        if support in path.parents:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if SLEEP.search(code_of(line)) and not explained(lines, i):
                found.append(f"{path}:{i + 1}: {line.strip()}")
    if found:
        print("sleeps in end-to-end tests without a `// pacing:` comment:")
        for f in found:
            print(f"  {f}")
        print(FIX)
        sys.exit(1)
    print(f"{root}: every sleep outside support/ is pacing, and says why")


if __name__ == "__main__":
    main()
