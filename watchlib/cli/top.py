"""xenstore-top: which domain is hammering xenstored, and is anything being dropped?

Reads the daemon over the protocol (``CONTROL stats [<domid>]``, paged as
DIRECTORY_PART is, one JSON object per page; xsd/core/stats.py writes it), so
it needs neither ``--metrics`` nor anything but the socket.  Counters are
cumulative; rates are the difference between two samples over the time
between them.

    xenstore-top                 a table refreshing in place (curses); keys below
    xenstore-top --once          two samples --interval apart, one table, exit
    xenstore-top --json          the same as one JSON document, for scripts

Keys: d domid, r requests/s, n nodes, w watches, f quota fill, x dropped
events, e refused requests (sort by it; again: reverse), q quit.
"""
import json
import sys
import time

from xenstore_protocol import Op, XenstoreError, join_fields

from ..client import Client
from ..commands import socket_path
from ..connection import Disconnected
from . import version_text
from .args import OneLineParser, die_of_sigpipe, positive_seconds
from .xs import quiet_watchlib_logging

SORT_KEYS = {
    "d": ("domid", lambda r: r["domid"]),
    "r": ("req/s", lambda r: r["rate"]),
    "n": ("nodes", lambda r: r["nodes"]),
    "w": ("watches", lambda r: r["watches"]),
    "f": ("fill", lambda r: r["fill"]),
    "x": ("dropped", lambda r: r["dropped"]),
    "e": ("refused", lambda r: r["refused"]),
}
DEFAULT_SORT = "r"
MAX_INTERVAL = 86400.0    # a day; time.sleep and curses' timeout overflow far above it

HEADER = ("DOMID", "CONN", "REQ/S", "NODES", "WATCH", "TX", "FILL%", "DROPPED", "REFUSED",
          "BUSIEST TYPES (/s)")


def fetch(client) -> dict:
    """domid -> row of ``CONTROL stats``, every page."""
    rows, first = {}, 0
    while first is not None:
        payload = join_fields(b"stats", str(first).encode())
        page = json.loads(client.request(Op.CONTROL, payload).rstrip(b"\0"))
        for row in page["domains"]:
            rows[row["domid"]] = row
        first = page["next"]
    return rows


def _requests(row) -> dict:
    """Requests answered by type, errors included (``errors`` keys are TYPE:ERROR)."""
    out = dict(row["requests"])
    for key, count in row["errors"].items():
        op = key.split(":", 1)[0]
        out[op] = out.get(op, 0) + count
    return out


def summarise(before: dict, after: dict, seconds: float) -> list:
    """One row per domain present in ``after``: rates since ``before``, and current usage."""
    seconds = max(seconds, 1e-6)
    out = []
    for domid, row in after.items():
        old = before.get(domid)
        now_req = _requests(row)
        # A domain released and reintroduced in between starts again from zero.
        old_req = _requests(old) if old is not None else {}
        if any(now_req.get(k, 0) < v for k, v in old_req.items()):
            old_req = {}
        rates = {op: (n - old_req.get(op, 0)) / seconds for op, n in now_req.items()
                 if n - old_req.get(op, 0) > 0}
        quota = row["quota"]
        fills = [q["used"] / q["limit"] for q in quota.values() if q["limit"]]
        out.append({
            "domid": domid,
            "connections": row["connections"],
            "rate": sum(rates.values()),
            "rates": dict(sorted(rates.items(), key=lambda kv: -kv[1])),
            "requests": sum(now_req.values()),
            "nodes": quota["nodes"]["used"],
            "watches": quota["watches"]["used"],
            "transactions": quota["transactions"]["used"],
            "quota": quota,
            "fill": max(fills) if fills else 0.0,
            "dropped": row["events"]["dropped"],
            "refused": sum(row["refused"].values()),
            "refused_by_quota": row["refused"],
            "errors": sum(row["errors"].values()),
            "node_memory": row["node_memory"],
        })
    return out


def sort_rows(rows: list, key: str, reverse: bool) -> list:
    _, get = SORT_KEYS[key]
    # Biggest first for every column but domid; the tie-break is always domid.
    biggest_first = key != "d"
    return sorted(rows, key=lambda r: (get(r), -r["domid"]) if biggest_first else get(r),
                  reverse=biggest_first != reverse)


def table(rows: list, width: int = 120) -> list:
    lines = ["{:>5} {:>4} {:>8} {:>6} {:>5} {:>3} {:>5} {:>8} {:>7}  {}".format(*HEADER)]
    for r in rows:
        busiest = " ".join(f"{op} {rate:.0f}" for op, rate in list(r["rates"].items())[:3])
        lines.append("{:>5} {:>4} {:>8.1f} {:>6} {:>5} {:>3} {:>5} {:>8} {:>7}  {}".format(
            r["domid"], r["connections"], r["rate"], r["nodes"], r["watches"], r["transactions"],
            f"{r['fill'] * 100:.0f}" if r["quota"]["nodes"]["limit"] else "-",
            r["dropped"], r["refused"], busiest)[:width])
    return lines


def _sample_pair(client, interval: float):
    first, t0 = fetch(client), time.monotonic()
    time.sleep(interval)
    second, t1 = fetch(client), time.monotonic()
    return summarise(first, second, t1 - t0)


def run_curses(client, interval: float, key: str) -> int:
    import curses

    def loop(screen):
        curses.curs_set(0)
        screen.timeout(int(interval * 1000))
        sort_key, reverse = key, False
        before, t0 = fetch(client), time.monotonic()
        rows = summarise(before, before, 1.0)
        while True:
            height, width = screen.getmaxyx()
            screen.erase()
            title = (f"xenstore-top  {len(rows)} domains  sort: {SORT_KEYS[sort_key][0]}"
                     f"{' (reversed)' if reverse else ''}   keys: d r n w f x e, q quit")
            screen.addnstr(0, 0, title, width - 1, curses.A_BOLD)
            lines = table(sort_rows(rows, sort_key, reverse), width - 1)
            for y, line in enumerate(lines[:height - 2]):
                screen.addnstr(y + 2, 0, line, width - 1, curses.A_REVERSE if y == 0 else 0)
            screen.refresh()
            ch = screen.getch()
            if ch in (ord("q"), ord("Q"), 27):
                return 0
            if 0 <= ch < 256 and chr(ch) in SORT_KEYS:
                reverse = not reverse if chr(ch) == sort_key else False
                sort_key = chr(ch)
            now, t1 = fetch(client), time.monotonic()
            if t1 - t0 >= interval * 0.5 or ch == -1:
                rows = summarise(before, now, t1 - t0)
                before, t0 = now, t1

    return curses.wrapper(loop)


def main(argv=None) -> int:
    parser = OneLineParser(
        prog="xenstore-top", description="Per-domain activity of xenstored (xsd's CONTROL stats).")
    parser.add_argument("--version", action="version", version=version_text("xenstore-top"))
    parser.add_argument("--once", action="store_true", help="print one table and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON document and exit")
    parser.add_argument("-i", "--interval", type=positive_seconds, default=1.0, metavar="SECONDS",
                        help="time between samples (default 1)")
    parser.add_argument("-s", "--sort", choices=sorted(SORT_KEYS), default=DEFAULT_SORT,
                        help="d domid, r requests/s (default), n nodes, w watches, f quota fill, "
                             "x dropped events, e refused requests")
    parser.add_argument("--socket", default=None,
                        help="xenstored's socket (default $XENSTORED_PATH, else the usual one)")
    args = parser.parse_args(argv)
    if args.interval > MAX_INTERVAL:
        parser.error(f"--interval: at most {MAX_INTERVAL:.0f} seconds")
    path = socket_path(args.socket)
    quiet_watchlib_logging()        # a lost daemon is said once, below
    try:
        client = Client(path, timeout=10, reconnect=False)
    except OSError as err:
        print(f"xenstore-top: cannot connect to xenstored at {path}: {err.strerror or err}",
              file=sys.stderr)
        return 1
    try:
        with client:
            if args.json or args.once:
                rows = sort_rows(_sample_pair(client, args.interval), args.sort, False)
                if args.json:
                    json.dump({"interval": args.interval, "domains": rows}, sys.stdout,
                              sort_keys=True)
                    sys.stdout.write("\n")
                else:
                    print("\n".join(table(rows)))
                sys.stdout.flush()          # here, so a closed pipe is caught below
                return 0
            return run_curses(client, args.interval, args.sort)
    except BrokenPipeError:
        die_of_sigpipe()
        return 141
    except XenstoreError as err:
        print(f"xenstore-top: CONTROL stats: {err} (is the daemon xsd?)", file=sys.stderr)
        return 1
    except Disconnected:
        # reconnect=False: a lost connection is the daemon gone (stopped, or restarting).
        print(f"xenstore-top: the daemon went away (its socket {path} closed)", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"xenstore-top: {path}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
