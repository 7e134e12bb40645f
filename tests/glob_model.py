"""The trivial model of glob matching that every glob engine is checked against.

Unrelated to the engines (watchlib.globs, the C glob set in xsd/_native/trie.c):
a dynamic-programming table over the components, the rules of trie.h:
"*" one component, "**" any run (zero included), anything else itself; an
"@name" matches only the same "@name".
"""


def is_special(path):
    return path.startswith("@")


def model_glob(pattern, path):
    """By table: ok[i][j] = the first i pattern components match the first j
    path components ("*" one component, "**" any run, others literally)."""
    if is_special(pattern) or is_special(path):
        return is_special(pattern) and pattern == path
    pat = pattern[1:].split("/") if pattern != "/" else []
    comps = path[1:].split("/") if path != "/" else []
    ok = [[False] * (len(comps) + 1) for _ in range(len(pat) + 1)]
    ok[0][0] = True
    for i, p in enumerate(pat, 1):
        for j in range(len(comps) + 1):
            if p == "**":
                ok[i][j] = ok[i - 1][j] or (j > 0 and ok[i][j - 1])
            elif j > 0 and (p == "*" or p == comps[j - 1]):
                ok[i][j] = ok[i - 1][j - 1]
    return ok[len(pat)][len(comps)]
