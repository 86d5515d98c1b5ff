"""Values reach rendered scripts as single shell words that never execute."""

from __future__ import annotations

import os
import subprocess

import pytest

from ixhpc import shell

from hostile import HOSTILE, PWNED


def _run(script: str) -> list[str]:
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10,
                         env={**os.environ, "PORT": "8000"})
    assert res.returncode == 0, res.stderr
    return res.stdout.split("\0")[:-1]


def test_every_hostile_string_arrives_verbatim_and_runs_nothing():
    if os.path.exists(PWNED):
        os.unlink(PWNED)
    line = shell.command(["printf", "%s\\0", *HOSTILE])
    assert _run(line) == HOSTILE
    assert not os.path.exists(PWNED)


def test_script_variables_expand_inside_one_word_and_literals_stay_literal():
    url = "http://$(id)" + shell.var("PORT") + "/x y"
    assert _run(shell.command(["printf", "%s\\0", url])) == ["http://$(id)8000/x y"]


def test_nul_bytes_are_refused():
    with pytest.raises(ValueError, match="NUL"):
        shell.word("a\0b")
    with pytest.raises(ValueError, match="NUL"):
        shell.word("a\0not a name\0b")


def test_long_commands_wrap_and_still_parse():
    argv = ["printf", "%s\\0"] + [f"--option-{i}=value {i}" for i in range(30)]
    line = shell.command(argv, width=40)
    assert line.count("\\\n") > 5
    assert _run(line) == argv[2:]


@pytest.mark.parametrize("bad", ["--partition=gb200 --x", "--job-name=a\nb", "--comment='x'",
                                 "--qos=$(id)", "partition=gb200"])
def test_directive_values_are_checked(bad):
    with pytest.raises(ValueError):
        shell.directive(bad)


def test_plain_directives_pass():
    assert shell.directive("--nodelist=gb[1-3]") == "--nodelist=gb[1-3]"
    assert shell.directive("--exclusive") == "--exclusive"
