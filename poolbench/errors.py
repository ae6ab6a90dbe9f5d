"""The one error type the CLI turns into a one-line message and exit code 2.

Any layer may raise it for input the user can fix (a bad knob, a missing file); the CLI edge is
the only place that prints it, so library code stays free of printing and exiting.
"""


class InputError(Exception):
    """Input the user can correct; the message names the problem and what to do."""
