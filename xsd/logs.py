"""How the daemon's log lines look: one line per event, for an operator.

Under systemd (``JOURNAL_STREAM`` set: stderr goes to the journal, which
stamps every line itself) a line carries no timestamp and no pid, and its
severity travels as a ``<N>`` syslog prefix that journald understands
(sd-daemon(3)); elsewhere each line starts with the time.  What is worth a
line (start, stop, domains introduced and released, journal replay and
snapshots with their durations) is logged where it happens; what can repeat
without bound (quota refusals, dropped watch events) is summarised per domain
or connection once per interval (``core/stats.log_summaries``).
"""
import logging
import os

PLAIN = "%(asctime)s xsd[%(process)d] %(levelname)s %(name)s: %(message)s"
JOURNAL = "%(syslog_prefix)s%(levelname)s %(name)s: %(message)s"

# sd-daemon(3) prefixes: <3> error, <4> warning, <6> info, <7> debug.
_SYSLOG = {logging.CRITICAL: "<2>", logging.ERROR: "<3>", logging.WARNING: "<4>",
           logging.INFO: "<6>", logging.DEBUG: "<7>"}


class _JournalFormatter(logging.Formatter):
    def format(self, record):
        record.syslog_prefix = _SYSLOG.get(record.levelno, "<6>")
        return super().format(record)


def under_journald(environ=os.environ) -> bool:
    return bool(environ.get("JOURNAL_STREAM"))


def configure(level: str) -> None:
    """The root handler on stderr, in the format that suits where stderr goes."""
    handler = logging.StreamHandler()
    if under_journald():
        handler.setFormatter(_JournalFormatter(JOURNAL))
    else:
        handler.setFormatter(logging.Formatter(PLAIN))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
