"""Domain reconciliation: tell a toolstack which domains appeared, went, or changed.

xenstore's ``@introduceDomain`` / ``@releaseDomain`` events carry no domid,
so, as xenopsd's xenstore_watch does, each event only triggers a scan of the
hypervisor's domain list, diffed against the previous scan:

- a domid not seen before: ``on_added(info)``
- a domid gone: ``on_removed(info)`` (its last known DomainInfo)
- same domid, other state, shutdown reason or uuid: ``on_changed(info, previous)``

``info`` is a ``hypervisor.DomainInfo(domid, uuid, state, shutdown_reason)``.
The first scan runs at start (every existing domain is "added").  Scans are
debounced: events arriving within ``debounce`` seconds of the first one are
folded into one scan, so a burst of introductions costs one scan.  A
``Resync`` or ``LostEvents`` on the watches also triggers a scan: the diff
makes up for events lost while the daemon was away.

Callbacks run on the watcher's own scan thread, one at a time, in the order
added, changed, removed by domid; an exception is logged.
"""
import logging
import threading

from xenstore_protocol.paths import INTRODUCE_DOMAIN, RELEASE_DOMAIN

log = logging.getLogger("watchlib")


def diff(previous: dict, current: dict):
    """``(added, removed, changed)`` between two ``{domid: DomainInfo}`` tables."""
    added = [current[d] for d in sorted(current.keys() - previous.keys())]
    removed = [previous[d] for d in sorted(previous.keys() - current.keys())]
    changed = [(current[d], previous[d]) for d in sorted(current.keys() & previous.keys())
               if current[d] != previous[d]]
    return added, removed, changed


class DomainWatcher:
    def __init__(self, on_added, on_removed, on_changed=None, *, hypervisor=None, client=None,
                 debounce=0.05):
        if hypervisor is None:
            from .hypervisor import default_hypervisor
            hypervisor = default_hypervisor()
        if client is None:
            from . import default_client
            client = default_client()
        self.hypervisor = hypervisor
        self.client = client
        self.on_added = on_added
        self.on_removed = on_removed
        self.on_changed = on_changed
        self.debounce = debounce
        self.domains = {}            # domid -> DomainInfo, as of the last scan
        self.scans = 0
        self._cv = threading.Condition()
        self._requested = 0          # triggers so far
        self._scanned = -1           # triggers covered by the last finished scan
        self._stopped = False
        self._subs = []
        self._thread = threading.Thread(target=self._loop, name="watchlib-domains", daemon=True)
        try:
            for name in (INTRODUCE_DOMAIN, RELEASE_DOMAIN):
                self._subs.append(client.watch(name, self._trigger, initial=False))
        except BaseException:
            self.close()
            raise
        self._thread.start()

    def _trigger(self, _item=None):
        with self._cv:
            self._requested += 1
            self._cv.notify_all()

    def rescan(self):
        """Ask for a scan now (e.g. when the hypervisor told you something)."""
        self._trigger()

    def sync(self, timeout=None) -> bool:
        """Wait until the callbacks have seen every event delivered before the call.

        ``client.sync()`` first (the events reach ``_trigger``), then wait for
        the scan that covers them.  False on timeout.
        """
        self.client.sync(timeout)
        with self._cv:
            target = self._requested
            return self._cv.wait_for(lambda: self._scanned >= target or self._stopped, timeout)

    def close(self):
        for sub in self._subs:
            sub.cancel()
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    cancel = close

    # -- scan thread --------------------------------------------------------------

    def _loop(self):
        first = True
        while True:
            with self._cv:
                if not first:
                    self._cv.wait_for(lambda: self._requested > self._scanned or self._stopped)
                    if self._stopped:
                        return
                    # Debounce: let the rest of a burst arrive, then scan once.
                    self._cv.wait_for(lambda: self._stopped, self.debounce)
                    if self._stopped:
                        return
                covers = self._requested
            first = False
            try:
                self._scan()
            except Exception:
                log.exception("watchlib: domain scan failed")
            with self._cv:
                self._scanned = covers
                self._cv.notify_all()

    def _scan(self):
        current = {info.domid: info for info in self.hypervisor.list_domains()}
        added, removed, changed = diff(self.domains, current)
        self.domains = current
        self.scans += 1
        for info in added:
            self._call(self.on_added, info)
        for info, previous in changed:
            if self.on_changed is not None:
                self._call(self.on_changed, info, previous)
        for info in removed:
            self._call(self.on_removed, info)

    @staticmethod
    def _call(fn, *args):
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("watchlib: domain callback %r raised", fn)


def domains(on_added, on_removed, on_changed=None, *, hypervisor=None, client=None,
            debounce=0.05) -> DomainWatcher:
    """Start reconciling domains; returns a DomainWatcher (``.close()``, context manager)."""
    return DomainWatcher(on_added, on_removed, on_changed, hypervisor=hypervisor,
                         client=client, debounce=debounce)
