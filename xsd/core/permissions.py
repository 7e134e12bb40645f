"""Who may do what to a node (docs/misc/xenstore.txt, "Permissions").

Same rules as C xenstored's perm_for_conn: privileged callers, the owner
(perms[0]) and a domain whose SET_TARGET is the owner get everything; else
the first later entry naming the caller (or its target) decides; else the
owner entry's kind is everyone's default.
"""
from xenstore_protocol import XenstoreError

READ, WRITE, OWNER = 1, 2, 4
ALL = READ | WRITE | OWNER
_KIND_MASK = {"n": 0, "r": READ, "w": WRITE, "b": READ | WRITE}


def access(session, perms) -> int:
    """Bit mask of READ/WRITE/OWNER that ``session`` has under ``perms``."""
    if session.privileged:
        return ALL
    owner = perms[0].domid
    domid, target = session.domid, session.target
    if owner == domid or (target is not None and owner == target):
        return ALL
    for perm in perms[1:]:
        if perm.domid == domid or (target is not None and perm.domid == target):
            return _KIND_MASK[perm.kind]
    return _KIND_MASK[perms[0].kind]


def can_read(session, perms) -> bool:
    return session.privileged or bool(access(session, perms) & READ)


def existing_node(session, view, path: str, need: int):
    """The node at ``path`` if ``session`` has ``need`` on it.

    Missing node: ENOENT, unless the caller cannot read the closest existing
    ancestor, in which case EACCES so that nothing about the tree leaks
    (xenstored's errno_from_parents).  Refused: EACCES.
    """
    node = view.get(path)
    if node is None:
        if session.privileged:
            if view.in_transaction:
                # In a transaction C xenstored reads the ancestors up to an existing one
                # (errno_from_parents) for every caller, and its commit conflicts when they
                # change; looking them up here records them (Transaction.get).
                closest_ancestor(view, path)
            raise XenstoreError("ENOENT", path)
        raise XenstoreError("ENOENT" if access(session, closest_ancestor(view, path)[1].perms) & READ
                            else "EACCES", path)
    if not session.privileged and (access(session, node.perms) & need) != need:
        raise XenstoreError("EACCES", path)
    return node


def closest_ancestor(view, path: str):
    """``(path, node)`` of the deepest existing strict ancestor of the missing ``path``.

    In a transaction every lookup is recorded (Transaction.get): the node's
    value is pinned for the rest of the transaction, its generation is checked
    at commit and it counts against ``transaction-nodes``.  C xenstored
    records exactly the parent, grandparent, ... up to the first existing one
    (core.c: construct_node and errno_from_parents read the parents one level
    at a time), so a transaction walks up the same way: a binary search would
    record other ancestors (the root, a grandparent), which pins their child
    lists and makes a later change to them outside fail the commit where C's
    does not.  The walk is bounded by ``transaction-nodes`` for guests.
    """
    if view.in_transaction:
        cut = path.rfind("/")
        while cut > 0:
            node = view.get(path[:cut])
            if node is not None:
                return path[:cut], node
            cut = path.rfind("/", 0, cut)
        return "/", view.get("/")
    return _closest_ancestor_in_store(view, path)


def _closest_ancestor_in_store(store, path: str):
    """closest_ancestor outside a transaction, where a lookup records nothing.

    A binary search over the path's "/" positions: a node exists only if its
    parent does (the store's invariant), so existence is monotone along the
    path.  Walking up one level at a time would build and hash every prefix,
    quadratic in the depth: a guest's READ of a missing 1,535-level path
    cost 23 normal requests (issue 12).  This looks at about log2(depth)
    prefixes; the root always exists.
    """
    low, high = 1, len(path)    # path[:low] exists ("/" at first), path[:high] does not
    found = store.get("/")
    while True:
        # A "/" strictly between low and high, near the middle: the end of an ancestor.
        middle = (low + high) // 2
        cut = path.find("/", max(middle, low + 1), high)
        if cut < 0:
            cut = path.rfind("/", low + 1, middle)
            if cut < 0:
                return path[:low], found
        node = store.get(path[:cut])
        if node is None:
            high = cut
        else:
            low, found = cut, node
