"""Bad input ends in one line naming the problem, exit code 2, before anything starts."""

from __future__ import annotations

import pytest

from poolbench.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["local", "up", "--arms", "standard,lambda"], "unknown arm 'lambda'"),
        (["local", "up", "--slots-per-ee", "-1"], "--slots-per-ee must be at least 1"),
        (["local", "up", "--min-ees", "5", "--max-ees", "2"], "--min-ees 5 is above --max-ees 2"),
        (["local", "up", "--target-utilisation", "1.5"], "--target-utilisation must be in (0, 1]"),
        (["local", "up", "--slots-per-ee", "many"], "Invalid value for '--slots-per-ee'"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1, err
    assert err.startswith("poolbench: error: ")
