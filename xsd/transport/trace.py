"""``-T FILE``: the C xenstored's trace, one line an operator can read per request,
reply, watch event and connection.

    IN  rw#1 (d0) 20261127 14:02:11 WRITE rid=5 tx=0 (/vm/1/name web)
    OUT rw#1 (d0) 20261127 14:02:11 WRITE rid=5 tx=0 (OK)
    OUT rw#2 (d0) 20261127 14:02:11 WATCH_EVENT rid=0 tx=0 (/vm/1/name tok)
    CREATE connection rw#1 (d0)
    DESTROY connection rw#1 (d0)

As in C (trace_io in tools/xenstored/core.c: `IN|OUT <conn> <date> <type> (<payload>)`)
NUL separators print as spaces; xsd adds the domain, request id and transaction;
payloads are cut at PAYLOAD_SHOWN bytes so one line stays one line.  The tracer
wraps the daemon's session doors (open, handle, close) and each session's write,
so the request path itself carries no tracing code.
"""
import time

from xenstore_protocol import Decoder, Op, ProtocolError

PAYLOAD_SHOWN = 256


def _summary(payload: bytes) -> str:
    shown = payload[:PAYLOAD_SHOWN].rstrip(b"\0").replace(b"\0", b" ")
    text = shown.decode("utf-8", "backslashreplace")
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return text + ("..." if len(payload) > PAYLOAD_SHOWN else "")


def _op_name(op: int) -> str:
    try:
        return Op(op).name
    except ValueError:
        return f"TYPE{op}"


class Tracer:
    def __init__(self, path: str):
        self.daemon = None
        self.path = path
        self.file = open(path, "a", encoding="utf-8")

    def install(self, daemon) -> None:
        open_session, handle, close_session = (
            daemon.open_session, daemon.handle, daemon.close_session)
        tracer = self

        def traced_open(write, **kwargs):
            decoder = Decoder()
            box = []

            def traced_write(data: bytes) -> None:
                if box:
                    tracer.output(box[0], decoder, data)
                write(data)
            session = open_session(traced_write, **kwargs)
            box.append(session)
            tracer.line(f"CREATE connection {_who(session)}")
            return session

        def traced_handle(session, packet) -> None:
            tracer.packet("IN ", session, packet)
            handle(session, packet)

        def traced_close(session) -> None:
            tracer.line(f"DESTROY connection {_who(session)}")
            close_session(session)
            tracer.file.flush()

        daemon.open_session, daemon.handle, daemon.close_session = (
            traced_open, traced_handle, traced_close)
        daemon.after_flush.append(self.flush)
        daemon.fastpath = None      # every request goes through handle, to be traced
        self.daemon = daemon

    def output(self, session, decoder: Decoder, data: bytes) -> None:
        try:
            packets = decoder.feed(data)
        except ProtocolError as err:
            self.line(f"OUT {_who(session)} undecodable output: {err}")
            return
        for packet in packets:
            self.packet("OUT", session, packet)

    def packet(self, direction: str, session, packet) -> None:
        stamp = time.strftime("%Y%m%d %H:%M:%S")
        self.line(f"{direction} {_who(session)} {stamp} {_op_name(packet.op)} "
                  f"rid={packet.req_id} tx={packet.tx_id} ({_summary(packet.payload)})")

    def line(self, text: str) -> None:
        self.file.write(text + "\n")

    def flush(self) -> None:
        self.file.flush()

    def reopen(self) -> None:
        """SIGHUP: the file at ``path`` from now on (logrotate moved the old one away).
        As C xenstored (reopen_log in tools/xenstored/core.c); if the open fails, the
        old file stays in use and the error goes up."""
        new = open(self.path, "a", encoding="utf-8")
        old, self.file = self.file, new
        old.close()

    def close(self) -> None:
        if self.flush in self.daemon.after_flush:
            self.daemon.after_flush.remove(self.flush)
        self.file.close()


def _who(session) -> str:
    return f"{session.name} (d{session.domid})"
