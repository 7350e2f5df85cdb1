"""Reading a Rust crate's src/ well enough for the project's own checks
(scripts/check-module-cycles, scripts/check-file-sizes). Standard library
only; no Rust parser, just what those checks need:

- `clean(text)`: the source with comments and the insides of string and char
  literals blanked out (newlines kept, so line numbers still hold);
- `tokens(cleaned)`: identifiers, `::` and single punctuation, each with its
  line;
- `test_items(toks)`: the token ranges of `#[cfg(test)]` items (a `mod tests
  { … }`, a `mod tests;`, a test-only fn, struct or impl);
- `modules(src)`: every module file under src/ and its module path;
  `test_module_names(toks)` and `module_dir(path)`: the files a module
  declares for tests only.

Imported by the scripts with bytecode writing off, as scripts/lib/fluxrecv.py
is, so no __pycache__ is left in the tree.
"""

import os
import re


def clean(text):
    """`text` with comments, and what string and char literals hold, turned
    into spaces; newlines are kept everywhere, so a line number in the result
    is the line number in the file."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return "".join(c if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(blank(text[i:end]))
            i = end
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif c in "rb" and _raw_string_at(text, i):
            m = _RAW.match(text, i)
            hashes = m.group(1)
            end = text.find('"' + hashes, m.end())
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + blank(text[i + 2 : end]))
            i = end
        elif c == '"' or (c == "b" and nxt == '"' and not _ident_char(text, i - 1)):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + blank(text[i + 2 : j + 1]))
            i = j + 1
        elif c == "'":
            end = _char_literal_end(text, i)
            if end:
                out.append("' '" + blank(text[i + 3 : end]))
                i = end
            else:  # a lifetime or a label
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


_RAW = re.compile(r'b?r(#*)"')


def _ident_char(text, i):
    return i >= 0 and (text[i].isalnum() or text[i] == "_")


def _raw_string_at(text, i):
    return not _ident_char(text, i - 1) and _RAW.match(text, i) is not None


def _char_literal_end(text, i):
    """The index after the char literal starting at `text[i] == "'"`, or None
    where the quote starts a lifetime (`'a`, `'static`) or a label."""
    if text.startswith("\\", i + 1):
        end = text.find("'", i + 3)
        return None if end < 0 else end + 1
    if i + 2 < len(text) and text[i + 2] == "'":
        return i + 3
    return None


_TOKEN = re.compile(r"r#[A-Za-z_]\w*|[A-Za-z_]\w*|::|\d\w*|\S")


class Token:
    __slots__ = ("text", "line")

    def __init__(self, text, line):
        self.text, self.line = text, line

    def __repr__(self):
        return f"{self.text}@{self.line}"


def tokens(cleaned):
    """The tokens of a cleaned source: identifiers (`r#` dropped), `::`,
    numbers, and every other character on its own."""
    out, line, pos = [], 1, 0
    for m in _TOKEN.finditer(cleaned):
        line += cleaned.count("\n", pos, m.start())
        pos = m.start()
        text = m.group(0)
        out.append(Token(text[2:] if text.startswith("r#") else text, line))
    return out


_OPEN, _CLOSE = "([{", ")]}"


def _attribute_end(toks, i):
    """With `toks[i]` the `#` of an attribute (`#[…]` or `#![…]`): the index
    after its closing bracket."""
    j = i + 1
    if j < len(toks) and toks[j].text == "!":
        j += 1
    depth = 0
    while j < len(toks):
        t = toks[j].text
        if t in _OPEN:
            depth += 1
        elif t in _CLOSE:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return j


def _is_attribute(toks, i):
    return toks[i].text == "#" and i + 1 < len(toks) and toks[i + 1].text in ("[", "!")


def _attribute_text(toks, i, end):
    return "".join(t.text for t in toks[i:end])


def is_test_attribute(text):
    """`#[cfg(test)]` and `#[cfg(all(test, …))]`: code compiled only for
    tests. (`cfg(any(test, …))` is not: it is built without tests too.)"""
    return text in ("#[cfg(test)]", "#![cfg(test)]") or text.startswith("#[cfg(all(test,")


def item_end(toks, i):
    """With `toks[i]` the first token of an item (after its attributes): the
    index after it, that is after its `;` or after the `}` of its body,
    whichever closes it at its own level."""
    depth = 0
    j = i
    while j < len(toks):
        t = toks[j].text
        if t in _OPEN:
            depth += 1
        elif t in _CLOSE:
            depth -= 1
            if depth == 0 and t == "}":
                # `Foo { … };` (a struct literal in a const) ends at the `;`.
                if j + 1 < len(toks) and toks[j + 1].text == ";":
                    return j + 2
                return j + 1
            if depth < 0:  # the end of the enclosing block
                return j
        elif t == ";" and depth == 0:
            return j + 1
        j += 1
    return j


def test_items(toks):
    """The `[start, end)` token ranges of the items marked `#[cfg(test)]`,
    attributes included. A file whose first attribute is `#![cfg(test)]` is
    one range."""
    ranges = []
    i = 0
    while i < len(toks):
        if not _is_attribute(toks, i):
            i += 1
            continue
        end = _attribute_end(toks, i)
        text = _attribute_text(toks, i, end)
        if not is_test_attribute(text):
            i = end
            continue
        if text.startswith("#!"):
            return [(0, len(toks))]
        j = end
        while j < len(toks) and _is_attribute(toks, j):
            j = _attribute_end(toks, j)
        stop = item_end(toks, j)
        ranges.append((i, stop))
        i = stop
    return ranges


def test_lines(text):
    """The line numbers (1-based) that `#[cfg(test)]` items cover, with the
    `///` doc comment lines just above each."""
    toks = tokens(clean(text))
    lines = text.splitlines()
    covered = set()
    for start, end in test_items(toks):
        first, last = toks[start].line, toks[end - 1].line
        while first > 1 and lines[first - 2].lstrip().startswith("///"):
            first -= 1
        covered.update(range(first, last + 1))
    return covered


def test_module_names(toks):
    """The names of the modules a file declares for tests only:
    `#[cfg(test)] mod x;` (their file holds nothing but tests)."""
    names = []
    for start, end in test_items(toks):
        for k in range(start, end - 2):
            if toks[k].text == "mod" and toks[k + 2].text == ";":
                names.append(toks[k + 1].text)
    return names


def module_dir(path):
    """The directory where the submodules of the module in file `path`
    live: beside a `mod.rs`, `lib.rs` or `main.rs`; in `a/b/` for `a/b.rs`."""
    d, name = os.path.split(path)
    if name in ("mod.rs", "lib.rs", "main.rs"):
        return d
    return os.path.join(d, name[:-3])


def modules(src):
    """{module path: file} for every `.rs` file of the library under `src`:
    `a/b.rs` and `a/b/mod.rs` are `a::b`, `lib.rs` is the crate root, "".
    Module paths are `::`-joined, without `crate`. `main.rs` is left out: it
    is the root of another crate, the binary, which reaches the library
    through `flux_recv::`, never `crate::`."""
    found = {}
    for d, dirs, names in os.walk(src):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(d, name)
            if not name.endswith(".rs") or path == os.path.join(src, "main.rs"):
                continue
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts == ["lib"]:
                parts = []
            found["::".join(parts)] = path
    return found
