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


@pytest.mark.parametrize("bad", ["--job-name=a\nb", "--comment='x'", "--comment=a\\b", "--comment=a\tb",
                                 "partition=gb200", "--Partition=x"])
def test_directive_values_are_checked(bad):
    with pytest.raises(ValueError):
        shell.directive(bad)
    with pytest.raises(ValueError):
        shell.option_word(bad)


def test_other_directive_values_are_single_quoted_on_the_line_and_plain_in_argv():
    text = '--comment={"kv": "mooncake", "n": [1, 2], "x": "$(id) #1"}'
    assert shell.directive(text) == """--comment='{"kv": "mooncake", "n": [1, 2], "x": "$(id) #1"}'"""
    assert shell.option_word(text) == text


@pytest.mark.cluster
def test_sbatch_reads_a_quoted_directive_as_its_value(slurm, tmp_path):
    """Slurm parses #SBATCH lines itself: the value arrives without the quotes, $ and # as text."""
    value = '{"kv": "mooncake", "n": [1, 2], "x": "$(id) #1 %j"}'
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n"
                      f"#SBATCH {shell.directive('--comment=' + value)}\n"
                      "#SBATCH --partition=debug\n#SBATCH --hold\ntrue\n")
    job = subprocess.run(["sbatch", "--parsable", str(script)], env=slurm, capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        shown = subprocess.run(["scontrol", "show", "job", job], env=slurm, capture_output=True, text=True,
                               check=True).stdout
    finally:
        subprocess.run(["scancel", job], env=slurm, check=False)
    assert f"Comment={value}" in shown


def test_plain_directives_pass():
    assert shell.directive("--nodelist=gb[1-3]") == "--nodelist=gb[1-3]"
    assert shell.directive("--exclusive") == "--exclusive"
