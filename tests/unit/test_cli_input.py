"""Bad input ends in one line naming the problem, exit code 2, before anything starts."""

from __future__ import annotations

import pytest

from input_errors import InputError
from poolbench.cli import main
from poolbench.input_checks import check_local_scale


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


def test_local_scale_refused_when_postgresql_shared_memory_would_not_fit() -> None:
    # 8 GiB available: half of it holds 4 GiB / 46.5 KiB = 90,200 max_connections slots.
    eight_gib = 8 * 1024**2
    check_local_scale(20_050, "--users 5,000 x 2 arms", eight_gib)  # 0.9 GiB: fits
    with pytest.raises(InputError) as refused:
        check_local_scale(200_050, "--users 50,000 x 2 arms", eight_gib)
    assert "8.9 GiB of shared memory" in str(refused.value)
    assert "over half of the 8.0 GiB available" in str(refused.value)
    assert "at most 45,075 users in all" in str(refused.value)
