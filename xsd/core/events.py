"""The kinds of watch event a request causes (``Daemon.fire`` fires them).

Each event is a tuple whose first item is one of these kinds; ops.py makes
them, transactions.py holds and merges them until commit, the daemon fires
them through the watch registry.
"""
CHANGE = "change"       # (CHANGE, path, perms, old_perms_or_None)
REMOVE = "remove"       # (REMOVE, root, {path: perms})
SPECIAL = "special"     # (SPECIAL, "@introduceDomain")
INITIAL = "initial"     # (INITIAL, watch): the event every new watch gets
