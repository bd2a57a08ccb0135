"""What is wrong with a config: each problem names the file, line and key to fix
(``file:line: key: reason``), and ``ConfigError`` carries all of them at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists everything wrong with it, in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the configuration"
        super().__init__("\n".join([head, *(str(p) for p in self.problems)]))


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the config, pointing at the file, line and key to fix."""

    file: Path
    line: int | None
    key: str
    message: str
    warning: bool = False  # accepted as it is, but said (check-config, serve's log)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        message = f"warning: {self.message}" if self.warning else self.message
        return f"{where}: {self.key}: {message}" if self.key else f"{where}: {message}"


KeyPath = tuple[str | int, ...]


def format_key(path: KeyPath) -> str:
    """``("venues", 3, "type")`` -> ``venues[3].type``, the spelling used in problems."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
