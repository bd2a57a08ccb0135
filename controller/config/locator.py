"""The TOML line locator: which line of the file defines a key path (tomllib keeps no
positions), so every problem can say ``file:line``; and TOML syntax errors as problems."""

from __future__ import annotations

import bisect
import contextlib
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path

from controller.config.problems import ConfigProblem, KeyPath

_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def syntax_problem(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> ConfigProblem:
    message = str(exc)
    line: int | None = None
    match = _TOML_POSITION.search(message)
    if match:
        message = message[: match.start()]
        if match.group(1):
            line = int(match.group(1))
            message += f" (column {match.group(2)})"
        else:
            line = text.count("\n") + 1
            message += " (at end of file)"
    return ConfigProblem(path, line, "", f"TOML syntax error: {message}")


class Locator:
    """Maps key paths to the TOML line that defines them (tomllib keeps no positions).

    Runs only on text tomllib already accepted, so it can be a lenient structural scan:
    headers, keys (bare, quoted, dotted), and values skipped by kind, recording the line
    where every key, array element and inline-table key starts.
    """

    def __init__(self, text: str) -> None:
        self._s = text
        self._i = 0
        self._newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        self._lines: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}
        with contextlib.suppress(IndexError, ValueError):  # unfollowed construct: keep the rest
            self._document()

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its nearest enclosing key or table header."""
        for end in range(len(path), 0, -1):
            found = self._lines.get(path[:end])
            if found is not None:
                return found
        return None

    # scanning helpers
    def _lineno(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def _record(self, path: KeyPath, pos: int) -> None:
        self._lines.setdefault(path, self._lineno(pos))

    def _peek(self, k: int = 1) -> str:
        return self._s[self._i : self._i + k]

    def _skip_blank(self, *, newlines: bool) -> None:
        s = self._s
        while self._i < len(s):
            ch = s[self._i]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self._i += 1
            elif ch == "#":
                end = s.find("\n", self._i)
                self._i = len(s) if end < 0 else end
            else:
                return

    def _document(self) -> None:
        table: KeyPath = ()
        s = self._s
        while True:
            self._skip_blank(newlines=True)
            if self._i >= len(s):
                return
            start = self._i
            if s.startswith("[[", start):
                self._i += 2
                keys = self._key()
                self._i = s.index("]]", self._i) + 2
                parent = self._resolve(keys[:-1])
                array = (*parent, keys[-1])
                index = self._arrays.get(array, -1) + 1
                self._arrays[array] = index
                self._record(array, start)
                table = (*array, index)
                self._record(table, start)
            elif s[start] == "[":
                self._i += 1
                keys = self._key()
                self._i = s.index("]", self._i) + 1
                table = self._resolve(keys)
                self._record(table, start)
            else:
                keys = self._key()
                self._skip_blank(newlines=False)
                self._i += 1  # "="
                self._skip_blank(newlines=False)
                for end in range(1, len(keys) + 1):
                    self._record((*table, *keys[:end]), start)
                self._value((*table, *keys))

    def _resolve(self, keys: Sequence[str]) -> KeyPath:
        """Header keys -> path; a name of an array of tables means its last element."""
        path: KeyPath = ()
        for key in keys:
            path = (*path, key)
            if path in self._arrays:
                path = (*path, self._arrays[path])
        return path

    def _key(self) -> list[str]:
        parts: list[str] = []
        s = self._s
        while True:
            self._skip_blank(newlines=False)
            ch = s[self._i]
            if ch == '"':
                end = self._basic_string_end(self._i + 1)
                parts.append(s[self._i + 1 : end - 1])
                self._i = end
            elif ch == "'":
                end = s.index("'", self._i + 1)
                parts.append(s[self._i + 1 : end])
                self._i = end + 1
            else:
                start = self._i
                while self._i < len(s) and (s[self._i].isalnum() or s[self._i] in "_-"):
                    self._i += 1
                if self._i == start:
                    raise ValueError("no key")
                parts.append(s[start : self._i])
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return parts
            self._i += 1

    def _basic_string_end(self, pos: int) -> int:
        s = self._s
        while s[pos] != '"':
            pos += 2 if s[pos] == "\\" else 1
        return pos + 1

    def _value(self, path: KeyPath) -> None:
        s = self._s
        self._record(path, self._i)
        if s.startswith('"""', self._i) or s.startswith("'''", self._i):
            quote = s[self._i]
            pos = self._i + 3
            while not s.startswith(quote * 3, pos):
                pos += 2 if quote == '"' and s[pos] == "\\" else 1
            pos += 3
            for _ in range(2):  # up to two quotes may end the content right before the closer
                if s.startswith(quote, pos):
                    pos += 1
            self._i = pos
        elif s[self._i] == '"':
            self._i = self._basic_string_end(self._i + 1)
        elif s[self._i] == "'":
            self._i = s.index("'", self._i + 1) + 1
        elif s[self._i] == "[":
            self._i += 1
            index = 0
            while True:
                self._skip_blank(newlines=True)
                if s[self._i] == "]":
                    self._i += 1
                    return
                self._value((*path, index))
                index += 1
                self._skip_blank(newlines=True)
                if s[self._i] == ",":
                    self._i += 1
        elif s[self._i] == "{":
            self._i += 1
            while True:
                self._skip_blank(newlines=True)
                if s[self._i] == "}":
                    self._i += 1
                    return
                start = self._i
                keys = self._key()
                for end in range(1, len(keys) + 1):
                    self._record((*path, *keys[:end]), start)
                self._skip_blank(newlines=False)
                self._i += 1  # "="
                self._skip_blank(newlines=False)
                self._value((*path, *keys))
                self._skip_blank(newlines=True)
                if s[self._i] == ",":
                    self._i += 1
        else:  # number, boolean or date-time
            while self._i < len(s) and s[self._i] not in ",]}#\n":
                self._i += 1
