"""The radload corpus file: pre-encoded RADIUS packets for a load generator to replay.

One format for our ``bench/radbench.py`` and the reference C blaster ``radblast``, so the
same corpus can be replayed by both and their figures compared::

    header (16 octets): b"RADLOAD1" | u32le count | first 4 octets of MD5(secret)
    count records:      u8 kind | u8 expect | u16le length | length octets of one packet

``kind`` 0 goes to the authentication port, 1 to the accounting port. ``expect`` is the
reply code the request should get, 0 meaning the usual one (Access-Accept for an
Access-Request, Accounting-Response for an Accounting-Request); radblast ignores it (it
reads the octet as reserved). The secret check lets a blaster refuse a secret the packets
were not made with. Pure standard library: radbench's worker processes import only this.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

MAGIC: Final = b"RADLOAD1"
KIND_AUTH: Final = 0
KIND_ACCT: Final = 1
_HEAD: Final = struct.Struct("<8sI4s")
_RECORD: Final = struct.Struct("<BBH")


class CorpusError(ValueError):
    """The file is not a well-formed radload corpus."""


def secret_check(secret: bytes) -> bytes:
    """The header's secret fingerprint: the first four octets of MD5(secret)."""
    return hashlib.md5(secret).digest()[:4]


@dataclass(frozen=True, slots=True)
class Record:
    kind: int  # KIND_AUTH or KIND_ACCT
    expect: int  # expected reply code, 0: the usual one for the request
    packet: bytes


class CorpusWriter:
    """Streams records to a file; the header (count) is written on close."""

    def __init__(self, path: Path, secret: bytes) -> None:
        self.path = path
        self.secret = secret
        self.count = 0
        self._file: BinaryIO = path.open("wb")
        self._file.write(bytes(_HEAD.size))

    def add(self, kind: int, packet: bytes, expect: int = 0) -> None:
        if kind not in (KIND_AUTH, KIND_ACCT):
            raise ValueError(f"kind {kind} is neither auth (0) nor acct (1)")
        self._file.write(_RECORD.pack(kind, expect, len(packet)))
        self._file.write(packet)
        self.count += 1

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.seek(0)
        self._file.write(_HEAD.pack(MAGIC, self.count, secret_check(self.secret)))
        self._file.close()

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Corpus:
    check: bytes  # secret fingerprint from the header
    records: list[Record]

    def matches(self, secret: bytes) -> bool:
        return secret_check(secret) == self.check


def read_corpus(path: Path) -> Corpus:
    """Load a whole corpus (it is replayed from memory)."""
    data = path.read_bytes()
    if len(data) < _HEAD.size:
        raise CorpusError(f"{path}: shorter than a radload header")
    magic, count, check = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CorpusError(f"{path}: not a radload corpus")
    return Corpus(check, list(_records(data, count, path)))


def _records(data: bytes, count: int, path: Path) -> Iterator[Record]:
    pos = _HEAD.size
    size = len(data)
    for i in range(count):
        if pos + _RECORD.size > size:
            raise CorpusError(f"{path}: truncated at record {i}")
        kind, expect, length = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        if kind not in (KIND_AUTH, KIND_ACCT) or length < 20 or pos + length > size:
            raise CorpusError(f"{path}: bad record {i}")
        yield Record(kind, expect, data[pos : pos + length])
        pos += length
