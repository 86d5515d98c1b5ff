"""Strings that must reach a program as data and never run: used across the render tests."""

HOSTILE = [
    "$(touch /tmp/ixhpc-pwned)",
    "`touch /tmp/ixhpc-pwned`",
    "'; touch /tmp/ixhpc-pwned; '",
    '"; touch /tmp/ixhpc-pwned; "',
    "a\ntouch /tmp/ixhpc-pwned",
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
