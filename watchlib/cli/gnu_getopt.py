"""GNU ``getopt_long`` as glibc runs it, so the shims accept, refuse and complain
exactly as xenstore-utils do.

Behaviour reproduced (observed with Debian's xenstore-utils on glibc 2.36):

- arguments are permuted: options may follow operands (``xenstore-read key -p``),
  unless ``POSIXLY_CORRECT`` is set, which stops at the first operand;
- ``--`` ends the options, ``-`` alone is an operand;
- short options cluster (``-pR``), an argument may be glued (``-n3``) or be the
  next word, whatever it looks like;
- long options may be abbreviated to any unambiguous prefix (``--pre``), take
  their argument as ``--number=3`` or ``--number 3``;
- a problem prints glibc's message on stderr and yields ``"?"``, which the
  xenstore tools ignore (they go on with the next option).

Options are handed out one at a time (``Parser`` is an iterator) because the
tools act on each as it comes: ``-h`` exits before later options are even
looked at, so their complaints are never printed.

``extensions`` are long options of ours that xenstore-utils lack (``--json``).
They match only when spelled out exactly and take part in neither prefix
matching nor the "ambiguous" lists, so every other spelling behaves as in the
Xen tools.
"""
from typing import NamedTuple, Optional


class LongOpt(NamedTuple):
    name: str
    has_arg: bool
    key: str          # what the parser yields for it (its short letter)


class Parser:
    """Iterate to get ``(key, optarg)`` pairs; then ``operands`` holds the rest.

    ``args`` is the whole vector, ``args[0]`` being the name used in messages
    (glibc prints ``argv[0]`` as given).  ``warn(text)`` receives each message,
    newline included.
    """

    def __init__(self, args, shortopts: str, longopts, warn, *, extensions=(),
                 posixly_correct=False):
        self.prog = args[0]
        self.args = list(args[1:])
        self.shortopts = shortopts
        self.longopts = list(longopts)
        self.extensions = {opt.name: opt for opt in extensions}
        self.warn = warn
        self.posixly_correct = posixly_correct
        self.operands = []

    def __iter__(self):
        args = self.args
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if arg == "--":
                self.operands.extend(args[i:])
                return
            if len(arg) < 2 or arg[0] != "-":
                self.operands.append(arg)
                if self.posixly_correct:
                    self.operands.extend(args[i:])
                    return
                continue
            if arg[1] == "-":
                result, i = self._long(arg, args, i)
                yield result
                continue
            j = 1
            while j < len(arg):
                c = arg[j]
                j += 1
                pos = self.shortopts.find(c)
                if pos < 0 or c in ":;":
                    self.warn(f"{self.prog}: invalid option -- '{c}'\n")
                    yield "?", None
                    continue
                if self.shortopts[pos + 1:pos + 2] != ":":
                    yield c, None
                    continue
                if j < len(arg):
                    optarg = arg[j:]
                elif i < len(args):
                    optarg = args[i]
                    i += 1
                else:
                    self.warn(f"{self.prog}: option requires an argument -- '{c}'\n")
                    yield "?", None
                    break
                yield c, optarg
                break

    def _long(self, arg: str, args, i: int):
        body = arg[2:]
        name, eq, value = body.partition("=")
        found = self.extensions.get(body if not eq else None)
        if found is None:
            exact = [opt for opt in self.longopts if opt.name == name]
            if exact:
                found = exact[0]
            else:
                candidates = [opt for opt in self.longopts if opt.name.startswith(name)]
                if not candidates:
                    self.warn(f"{self.prog}: unrecognized option '--{body}'\n")
                    return ("?", None), i
                if len(candidates) > 1:
                    names = "".join(f" '--{opt.name}'" for opt in candidates)
                    self.warn(f"{self.prog}: option '--{body}' is ambiguous; "
                              f"possibilities:{names}\n")
                    return ("?", None), i
                found = candidates[0]
        optarg: Optional[str] = None
        if found.has_arg:
            if eq:
                optarg = value
            elif i < len(args):
                optarg = args[i]
                i += 1
            else:
                self.warn(f"{self.prog}: option '--{found.name}' requires an argument\n")
                return ("?", None), i
        elif eq:
            self.warn(f"{self.prog}: option '--{found.name}' doesn't allow an argument\n")
            return ("?", None), i
        return (found.key, optarg), i
