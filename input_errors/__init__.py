"""The one error type the CLI turns into a one-line message and exit code 2.

Any layer may raise it for input the user can fix (a bad knob, a missing file); the CLI edge is
the only place that prints it, so library code stays free of printing and exiting. A leaf of its
own, standard library only, so that local/, loadtest/ and analysis/ can raise it without
importing the CLI package above them (tests/unit/test_layering.py keeps it so).
"""


class InputError(Exception):
    """Input the user can correct; the message names the problem and what to do."""
