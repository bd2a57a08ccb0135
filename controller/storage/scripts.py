"""The Lua scripts of ``controller/storage/lua``, found by listing the directory.

Every ``lua/*.lua`` is a script the store can run by name (its file name without
``.lua``); nothing keeps a second list of names, so a new script is a new file. A line
``-- #include NAME.lua`` is replaced at load time by ``lua/lib/NAME.lua`` (a prelude of
``local function``s shared by several scripts, e.g. the device-counting rule of
``auth_state.lua``, ``commit_login.lua`` and ``mac_login.lua``), so a rule two scripts
must apply alike is written once. The SHA1 is of the expanded source: what ``SCRIPT
LOAD`` answers and ``EVALSHA`` names (Redis "EVAL" documentation: scripts are cached by
SHA1 of their body).

Each script's header (its leading ``--`` comment) lists its KEYS and ARGV
(``KEYS[1] …``, ``ARGV[3 .. 2+n]``, ``ARGV[16+n ..]``); ``Header`` parses those
references so a test can hold the number of KEYS and ARGV the Python side passes against
what the script says it reads.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Final

INCLUDE: Final = re.compile(r"^--\s*#include\s+([A-Za-z0-9_]+\.lua)\s*$", re.MULTILINE)
_REFERENCE: Final = re.compile(r"\b(KEYS|ARGV)\[([^\]]+)\]")


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``KEYS[...]`` or ``ARGV[...]`` of a header: a position, a range ``lo .. hi``,
    or an open range ``lo ..`` (every argument from ``lo`` on); bounds are integers or
    expressions of ``n`` (``3+n``), evaluated by ``last``."""

    table: str  # "KEYS" | "ARGV"
    lo: str
    hi: str | None  # None: a single position; "": open to the end

    def last(self, n: int) -> int:
        """The highest position this reference requires for this ``n`` (an open range
        may be empty: it requires only what comes before it)."""
        if self.hi == "":
            return _evaluate(self.lo, n) - 1
        return _evaluate(self.hi or self.lo, n)


def _evaluate(expr: str, n: int) -> int:
    """``5``, ``2+n``, ``15+n``: the header's small arithmetic, nothing else."""
    total = 0
    for term in expr.replace(" ", "").split("+"):
        total += n if term == "n" else int(term)
    return total


@dataclass(frozen=True, slots=True)
class Header:
    """What a script's header says it reads."""

    references: tuple[Reference, ...]

    def count(self, table: str, n: int = 0) -> int:
        """How many KEYS (or ARGV) the script reads at least, for this ``n``."""
        return max((r.last(n) for r in self.references if r.table == table), default=0)

    def variadic(self, table: str) -> bool:
        """True when the header ends the table with an open range (``ARGV[16+n ..]``)."""
        return any(r.table == table and r.hi == "" for r in self.references)


def parse_header(source: str) -> Header:
    comment: list[str] = []
    for line in source.splitlines():
        if not line.startswith("--"):
            break
        comment.append(line)
    refs: list[Reference] = []
    for table, inside in _REFERENCE.findall("\n".join(comment)):
        lo, dots, hi = inside.partition("..")
        refs.append(Reference(table, lo.strip(), hi.strip() if dots else None))
    return Header(tuple(refs))


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str  # with its includes expanded: what Redis runs
    sha: str
    header: Header


def _expand(text: str, lib: Traversable, seen: tuple[str, ...] = ()) -> str:
    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            raise ValueError(f"lua/lib/{name}: included in itself")
        body = lib.joinpath(name).read_text()
        return f"-- {name} (lua/lib)\n" + _expand(body, lib, (*seen, name)).rstrip("\n")

    return INCLUDE.sub(include, text)


def find_scripts(package: str = "controller.storage") -> MappingProxyType[str, LuaScript]:
    """Every ``lua/*.lua`` of ``package`` by name, includes expanded (read-only)."""
    folder = resources.files(package).joinpath("lua")
    lib = folder.joinpath("lib")
    out: dict[str, LuaScript] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.is_file() or not entry.name.endswith(".lua"):
            continue
        text = entry.read_text()
        source = _expand(text, lib)
        name = entry.name.removesuffix(".lua")
        sha = hashlib.sha1(source.encode()).hexdigest()
        out[name] = LuaScript(name, source, sha, parse_header(text))
    return MappingProxyType(out)
