#!/usr/bin/env python3
"""The kill -9 test of tests/durability/test_crash.py, for as long as you like.

    python bench/crash_soak.py [--rounds 300] [--clients 8] [--seed N] [--fsync batch|interval|never]
    python bench/crash_soak.py --guest [--rounds 100] [--seed N]

Every round: mixed load (writes, removals, three-key transactions) from
``--clients`` connections, SIGKILL after a random delay, restart, check that
every acknowledged change is there, that no transaction is half-applied and
that CONTROL check passes.  Prints what it did; exits 1 on the first loss.
``--guest``: tests/durability/test_guest_crash.py instead, a guest on its
ring that must never notice the kills.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.durability.test_crash import crash_rounds   # noqa: E402
from tests.durability.test_guest_crash import guest_crash_rounds   # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--fsync", choices=("batch", "interval", "never"), default="batch")
    parser.add_argument("--max-delay", type=float, default=0.6, help="seconds before each kill, at most")
    parser.add_argument("--guest", action="store_true", help="a guest's load on its ring instead")
    args = parser.parse_args()
    started = time.monotonic()
    if args.guest:
        with tempfile.TemporaryDirectory(prefix="xsd-soak-") as work:
            try:
                stats = guest_crash_rounds(os.path.join(work, "run"), args.rounds, args.seed)
            except AssertionError as err:
                print(f"GUEST NOTICED (seed {args.seed}): {err}", file=sys.stderr)
                return 1
        print(f"seed {args.seed}: {stats['rounds']} kills in {time.monotonic() - started:.0f} s under "
              f"a guest's load; every request answered, {stats['writes']} keys and "
              f"{stats['transactions']} transactions checked")
        return 0
    with tempfile.TemporaryDirectory(prefix="xsd-soak-") as work:
        try:
            stats = crash_rounds(os.path.join(work, "run"), args.rounds, args.seed, args.clients,
                                 ("--fsync", args.fsync), args.max_delay)
        except AssertionError as err:
            print(f"LOSS (seed {args.seed}): {err}", file=sys.stderr)
            return 1
    print(f"seed {args.seed}, fsync {args.fsync}: {stats['rounds']} kills in "
          f"{time.monotonic() - started:.0f} s; {stats['acknowledged']} acknowledged requests, all "
          f"present; in flight at the kill: {stats['in_flight_applied']} applied, "
          f"{stats['in_flight_lost']} not (both allowed); {stats['torn_tails']} torn tails dropped; "
          f"{stats['snapshots']} snapshots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
