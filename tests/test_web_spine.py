"""The web layer's spine without sockets: the one key-file loader (raced by real
processes), the one signer, the one CSRF mechanism, the one error middleware and the
bearer roles of every protected route.

Key files cross a process boundary, so they are raced by real processes; everything
else is pure logic, driven with ``aiohttp.test_utils.make_mocked_request``.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from controller.services.signing import Signer, b64
from controller.storage.keyfiles import load_key, load_person_key, load_portal_key

# --------------------------------------------------------------------------- key files


def _race_key(
    path: str, start: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue[bytes]
) -> None:
    start.wait()  # every process calls load_key at the same moment
    out.put(load_key("", Path(path)))


def test_processes_creating_one_key_at_once_agree_on_it(tmp_path: Path) -> None:
    """Four processes, released together by a barrier, create the same missing key file
    (eight rounds): each returns the same key, the file is 0600, no temporary is left."""
    ctx = multiprocessing.get_context("spawn")
    for n in range(8):
        path = tmp_path / f"round{n}" / "portal.key"
        start, out = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_race_key, args=(str(path), start, out)) for _ in range(4)]
        for p in procs:
            p.start()
        keys = {out.get(timeout=60) for _ in procs}
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        assert keys == {path.read_text().encode()} and len(path.read_text()) == 64
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert os.listdir(path.parent) == ["portal.key"]


def _load_at(
    path: Path, start: threading.Barrier, found: list[bytes], errors: list[BaseException]
) -> None:
    start.wait()
    try:
        found.append(load_key("", path))
    except BaseException as exc:
        errors.append(exc)


def test_threads_of_one_process_creating_one_key_agree_on_it(tmp_path: Path) -> None:
    """Same pid, so a temporary named after the pid would be shared (and unlinked under
    another thread's feet): the loader's temporary names are unique per call."""
    for n in range(20):
        path = tmp_path / f"round{n}" / "person.key"
        start = threading.Barrier(6)
        found: list[bytes] = []
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_load_at, args=(path, start, found, errors)) for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(set(found)) == 1 and len(found) == 6
        assert os.listdir(path.parent) == ["person.key"]


def test_a_configured_key_wins_and_both_keys_use_the_one_loader(tmp_path: Path) -> None:
    assert load_person_key("configured", tmp_path) == b"configured"
    assert not (tmp_path / "person.key").exists()
    person, portal = load_person_key("", tmp_path), load_portal_key("", tmp_path)
    assert person != portal and len(person) == len(portal) == 64
    assert load_person_key("", tmp_path) == person  # read back, not regenerated
    assert (tmp_path / "person.key").read_text().encode() == person


# --------------------------------------------------------------------------- the signer


def test_signer_tokens_are_bound_to_their_key_purpose_and_expiry() -> None:
    signer = Signer(b"k" * 32)
    plain = signer.sign("ctx", b"payload")
    assert signer.unsign("ctx", plain) == b"payload"
    assert signer.unsign("device", plain) is None  # wrong purpose
    assert Signer(b"x" * 32).unsign("ctx", plain) is None  # wrong key
    assert signer.unsign("ctx", plain, now=0) is None  # an expiry was expected
    timed = signer.sign("device", b"pid|tid", expires=1000)
    assert signer.unsign("device", timed, now=999) == b"pid|tid"
    assert signer.unsign("device", timed, now=1000) == b"pid|tid"  # the last second
    assert signer.unsign("device", timed, now=1000.5) is None  # expired
    assert signer.unsign("device", timed) is None  # no expiry was expected
    assert signer.unsign("csrf", timed, now=999) is None  # wrong purpose
    body, expires, tag = timed.split(".")
    assert signer.unsign("device", f"{body}.{int(expires) + 1}.{tag}", now=999) is None
    assert signer.unsign("device", f"{b64(b'pid|other')}.{expires}.{tag}", now=999) is None
    assert signer.unsign("device", f"{body}.{expires}.{tag[:-2]}AA", now=999) is None
    # a non-expiring token re-labelled as an expiring one (same payload and tag)
    pbody, ptag = plain.split(".")
    assert signer.unsign("ctx", f"{pbody}.99999999999.{ptag}", now=0) is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "no-dot", "a.b.c.d", "\udcff.\udcfe", "a.-1.b", "a.１２.b", "a." + "9" * 40 + ".b"],
)
def test_signer_refuses_malformed_tokens_without_raising(token: str) -> None:
    signer = Signer(b"k" * 32)
    assert signer.unsign("device", token) is None
    assert signer.unsign("device", token, now=0) is None


def test_signer_digests_are_per_purpose_and_take_any_form_text() -> None:
    signer = Signer(b"k" * 32)
    assert signer.digest("csrf", "n") != signer.digest("otp", "n")
    assert len(signer.digest("csrf", "\udcff")) == 32  # form bytes that were not UTF-8
    with pytest.raises(ValueError):
        signer.sign("Not a label\x00", b"")
