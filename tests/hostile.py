"""Strings that must reach a program as data and never run: used across the render tests."""

HOSTILE = [
    "$(touch /tmp/ixhpc-pwned)",
    "`touch /tmp/ixhpc-pwned`",
    "'; touch /tmp/ixhpc-pwned; '",
    '"; touch /tmp/ixhpc-pwned; "',
    "a\u2028touch /tmp/ixhpc-pwned",  # a line break to some readers; control characters
                                     # (\n, NUL) never load (tests/test_errors.py)
    "${IFS}touch${IFS}/tmp/ixhpc-pwned",
    "x & touch /tmp/ixhpc-pwned &",
    "x | touch /tmp/ixhpc-pwned",
    "x; touch /tmp/ixhpc-pwned",
    "x > /tmp/ixhpc-pwned",
    "*",
    "~root",
    "!!",
    "-rf",
    "\\",
    " leading and trailing ",
    "",
    "ünïcødé ✓",
]
PWNED = "/tmp/ixhpc-pwned"
