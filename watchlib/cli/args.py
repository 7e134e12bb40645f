"""Command-line pieces shared by xsd's own tools (xenstore-top, xsd-fleet; not the Xen shims,
whose parsing copies the C tools'): a bad command line is one line on stderr and exit 2."""
import argparse
import math
import os
import signal


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        """One line (argparse would print the usage above it), exit 2."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0 ("nan", "inf", "0", "-1" refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: want a finite number of seconds above 0")
    return value


def die_of_sigpipe() -> None:
    """What the C tools do when whoever reads stdout has gone (``... | head``): die of
    SIGPIPE, quietly (Python ignores the signal and raises BrokenPipeError instead)."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
