"""Stored objects damaged behind the hub's back: a flipped byte, and a crafted frame that decodes to
far more than the catalog says it holds.

A reader must get an error or a body cut short, never a complete 200 with wrong bytes: every byte
served is the original byte at that position. `verify` and `deltahub admin verify` name the
repository and path of every damaged file. Parts of files the damage does not touch still read.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from huggingface_hub import hf_hub_download
from sqlalchemy import select

from service.app import create_app
from storage.app.hub import Hub
from storage.app.reader import FrameCache
from storage.app.views import FileAddition
from storage.catalog import jobs
from storage.catalog.models import FileObject as FileObjectRow
from storage.catalog.models import FileSegment, Frame, StoreObject
from storage.core.blocksums import BLOCK_BYTES
from storage.core.codecs import get_codec
from storage.core.dtypes import DTYPES
from storage.core.errors import IntegrityError
from storage.core.frames import encode_frame, read_frame_header
from storage.settings import load_settings
from tests.models import finetune, make_weights, to_safetensors
from tests.reliability.figures import Figures
from tests.reliability.harness import REPO_ROOT
from tests.reliability.server import running
from tests.service.conftest import TEST_OPTIONS, TOKENS
from workers.jobs.ingest import run_ingest
from workers.jobs.verify import verify

VICTIM, BYSTANDER = "alice/victim", "alice/bystander"


@dataclass
class Stored:
    data_dir: Path
    hub: Hub
    victim: bytes
    bystander: bytes

    def fresh_hub(self) -> Hub:
        """The hub as a restarted process sees it: nothing decoded and cached from before the damage."""
        return Hub.from_settings(self.hub.settings)


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[Stored]:
    settings = load_settings(data_dir=tmp_path / "hub", frame_bytes=16 << 10, pack_target_bytes=64 << 10)
    hub = Hub.from_settings(settings, migrate=True)
    victim = to_safetensors(finetune(make_weights(41), 42), "BF16")
    bystander = to_safetensors(make_weights(43), "BF16")
    for repo_id, data in ((VICTIM, victim), (BYSTANDER, bystander)):
        hub.create_repo(repo_id)
        info = hub.upload([data])
        hub.commit(repo_id, "main", message="v1", additions=[FileAddition("model.safetensors", info.sha256)])
    with hub.session() as s:
        pending = jobs.unfinished_jobs(s)
    for job_id in pending:
        run_ingest(hub, job_id)
    assert verify(hub).ok
    yield Stored(tmp_path / "hub", hub, victim, bystander)
    hub.engine.dispose()


def _damaged_range(hub: Hub, sha: str, key: str, position: int) -> tuple[int, int]:
    """The bytes of file `sha` that the frame holding `position` of object `key` rebuilds."""
    with hub.session() as s:
        frame = s.execute(select(Frame).where(Frame.object_key == key, Frame.object_offset <= position)
                          .order_by(Frame.object_offset.desc()).limit(1)).scalar_one()
        segment = s.execute(select(FileSegment).where(FileSegment.file_sha256 == sha,
                                                      FileSegment.tensor_id == frame.tensor_id)).scalar_one()
        return segment.offset + frame.raw_offset, segment.offset + frame.raw_offset + frame.raw_length


def _victim_object(hub: Hub, sha: str) -> tuple[str, int]:
    """A store object only the victim uses, and a position inside one of its frames' payloads."""
    with hub.session() as s:
        rows = s.execute(
            select(Frame.object_key, Frame.object_offset, Frame.object_length, FileSegment.file_sha256)
            .join(FileSegment, FileSegment.tensor_id == Frame.tensor_id)
        ).all()
    users: dict[str, set[str]] = {}
    for key, _, _, file_sha in rows:
        users.setdefault(key, set()).add(file_sha)
    key, offset, length, _ = max((r for r in rows if users[r[0]] == {sha}), key=lambda r: r[2])
    return key, offset + length - 7  # in the payload, past the frame header


def _download(url: str) -> tuple[int, bytes, bool]:
    """(status, bytes received, whether the body arrived complete)."""
    received = bytearray()
    try:
        with httpx.stream("GET", url, timeout=60) as response:
            for chunk in response.iter_bytes():
                received += chunk
        return response.status_code, bytes(received), True
    except httpx.HTTPError:
        return 200, bytes(received), False


def test_flipped_byte_is_never_served_and_verify_names_the_file(stored: Stored, tmp_path: Path,
                                                                hf_client_env: Path, figures: Figures) -> None:
    sha = hashlib.sha256(stored.victim).hexdigest()
    key, position = _victim_object(stored.hub, sha)
    blob = bytearray(stored.hub.store.get(key))
    blob[position] ^= 0x40
    stored.hub.store.put(key, bytes(blob))
    start, end = _damaged_range(stored.hub, sha, key, position)
    hub = stored.fresh_hub()

    with running(create_app(hub, hub.settings, TOKENS, options=TEST_OPTIONS)) as url:
        resolve = f"{url}/{VICTIM}/resolve/main/model.safetensors"
        status, body, complete = _download(resolve)
        assert not (status == 200 and complete), "a damaged file was served whole"
        assert body == stored.victim[: len(body)], "bytes served differ from the original"
        assert len(body) <= start  # nothing from the damaged frame on
        with pytest.raises(Exception):  # noqa: B017 (whatever the client raises, it must not succeed)
            hf_hub_download(VICTIM, "model.safetensors", endpoint=url, cache_dir=tmp_path / "cache")
        cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.stat().st_size == len(stored.victim)]
        assert all(p.read_bytes() == stored.victim for p in cached)
        # A range inside the damaged frame fails; one elsewhere, and the other model, still read.
        status, body, complete = _download_range(resolve, start, end)
        assert not (status == 206 and complete) and body == stored.victim[start : start + len(body)]
        status, body, complete = _download_range(resolve, 0, start)
        assert (status, body, complete) == (206, stored.victim[:start], True)
        assert httpx.get(f"{url}/{BYSTANDER}/resolve/main/model.safetensors").content == stored.bystander

    report = verify(hub)
    assert [(p.sha256, p.locations) for p in report.problems] == [(sha, ((VICTIM, "model.safetensors"),))]
    cli = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", "admin", "verify", "--data-dir",
         str(stored.data_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    )
    assert cli.returncode != 0
    assert VICTIM in cli.stdout and "model.safetensors" in cli.stdout and BYSTANDER not in cli.stdout, cli.stdout
    figures.add(bad_inputs=1)


def _download_range(url: str, start: int, end: int) -> tuple[int, bytes, bool]:
    received = bytearray()
    try:
        with httpx.stream("GET", url, headers={"Range": f"bytes={start}-{end - 1}"}, timeout=60) as response:
            for chunk in response.iter_bytes():
                received += chunk
        return response.status_code, bytes(received), True
    except httpx.HTTPError:
        return 206, bytes(received), False


CLAIMED = 64 << 20  # what the crafted frame decodes to; the catalog says 16 KiB


def _plant_bomb(hub: Hub, sha: str) -> int:
    """Point one of the victim's frames at a crafted object: a well-formed, checksummed frame that
    decodes to CLAIMED bytes. Returns the frame's raw length according to the catalog."""
    with hub.session() as s:
        frame = s.scalars(select(Frame).join(FileSegment, FileSegment.tensor_id == Frame.tensor_id)
                          .where(FileSegment.file_sha256 == sha, FileSegment.seq == 1, Frame.seq == 0)).one()
        original = hub.store.get(frame.object_key, frame.object_offset, frame.object_offset + frame.object_length)
        header = read_frame_header(original)
        bomb = encode_frame(get_codec(header.codec_id, header.config), bytes(CLAIMED), DTYPES[header.dtype])
        key = f"packs/{uuid.uuid4().hex}"
        hub.store.put(key, bomb)
        s.add(StoreObject(key=key, size=len(bomb), kind="frame"))
        s.flush()
        frame.object_key, frame.object_offset, frame.object_length = key, 0, len(bomb)
        return frame.raw_length


def test_crafted_frame_that_decodes_to_more_than_claimed_is_refused(stored: Stored, figures: Figures) -> None:
    sha = hashlib.sha256(stored.victim).hexdigest()
    claimed = _plant_bomb(stored.hub, sha)
    assert claimed < CLAIMED // 1000
    hub = stored.fresh_hub()
    with running(create_app(hub, hub.settings, TOKENS, options=TEST_OPTIONS)) as url:
        status, body, complete = _download(f"{url}/{VICTIM}/resolve/main/model.safetensors")
        assert not (status == 200 and complete)
        assert body == stored.victim[: len(body)]
        assert httpx.get(f"{url}/api/v1/health").status_code == 200
    with pytest.raises(IntegrityError):
        b"".join(stored.fresh_hub().read(sha))
    figures.add(bad_inputs=1)


def test_crafted_frame_costs_no_more_memory_than_the_catalog_allows(stored: Stored) -> None:
    sha = hashlib.sha256(stored.victim).hexdigest()
    _plant_bomb(stored.hub, sha)
    hub = stored.fresh_hub()
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError):
            b"".join(hub.read(sha))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < CLAIMED // 4, f"decoding a frame the catalog sizes at 16 KiB took {peak >> 20} MiB"


def test_a_flipped_byte_in_a_staged_file_is_never_served(tmp_path: Path, hf_client_env: Path,
                                                          figures: Figures) -> None:
    """Before ingest the file is served from its staged upload: every block sent is checked against the
    checksums recorded while it streamed in (issue 12, part 3, item 2)."""
    hub = Hub.from_settings(load_settings(data_dir=tmp_path / "hub"), migrate=True)
    data = os.urandom(3 * BLOCK_BYTES + 12345)
    hub.create_repo(VICTIM)
    info = hub.upload([data])
    hub.commit(VICTIM, "main", message="staged", additions=[FileAddition("weights.bin", info.sha256)])
    with hub.session() as s:
        key = s.get(FileObjectRow, info.sha256).staging_key  # type: ignore[union-attr]
    assert key is not None  # no ingest ran: it is served from staging
    position = 2 * BLOCK_BYTES + 77
    blob = bytearray(hub.store.get(key))
    blob[position] ^= 0x01
    hub.store.put(key, bytes(blob))
    try:
        with running(create_app(hub, hub.settings, TOKENS, options=TEST_OPTIONS)) as url:
            resolve = f"{url}/{VICTIM}/resolve/main/weights.bin"
            status, body, complete = _download(resolve)
            assert not (status == 200 and complete), "a damaged staged file was served whole"
            assert body == data[: len(body)] and len(body) <= 2 * BLOCK_BYTES
            with pytest.raises(Exception):  # noqa: B017 (whatever the client raises, it must not succeed)
                hf_hub_download(VICTIM, "weights.bin", endpoint=url, cache_dir=tmp_path / "cache")
            cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.stat().st_size == len(data)]
            assert all(p.read_bytes() == data for p in cached)
            # Ranges in undamaged blocks still read; one touching the damaged block does not.
            assert _download_range(resolve, 10, BLOCK_BYTES + 10) == (206, data[10 : BLOCK_BYTES + 10], True)
            assert _download_range(resolve, 3 * BLOCK_BYTES, len(data)) == (206, data[3 * BLOCK_BYTES :], True)
            status, body, complete = _download_range(resolve, position - 5, position + 5)
            assert not (status == 206 and complete) and body == data[position - 5 : position - 5 + len(body)]
    finally:
        hub.engine.dispose()
    figures.add(bad_inputs=1)


def _flip(hub: Hub, sha: str) -> tuple[int, int]:
    """Flip one payload byte of a frame only `sha` uses; returns the file bytes that frame rebuilds."""
    key, position = _victim_object(hub, sha)
    blob = bytearray(hub.store.get(key))
    blob[position] ^= 0x40
    hub.store.put(key, bytes(blob))
    return _damaged_range(hub, sha, key, position)


def test_a_flipped_byte_is_caught_through_a_plan_cached_before_the_damage(stored: Stored) -> None:
    """Whole reads are not hashed again (the frames' CRCs check every byte): a server whose plan of
    the file was cached before the damage, with no decoded frame left, still cuts the body short."""
    sha = hashlib.sha256(stored.victim).hexdigest()
    hub = stored.fresh_hub()
    assert b"".join(hub.read(sha)) == stored.victim  # plans the file and caches the plan
    start, end = _flip(hub, sha)
    hub.reader.cache = FrameCache(hub.reader.cache.max_bytes)
    with running(create_app(hub, hub.settings, TOKENS, options=TEST_OPTIONS)) as url:
        resolve = f"{url}/{VICTIM}/resolve/main/model.safetensors"
        status, body, complete = _download(resolve)
        assert not (status == 200 and complete), "a damaged file was served whole"
        assert body == stored.victim[: len(body)] and len(body) <= start
        status, body, complete = _download_range(resolve, start, end)
        assert not (status == 206 and complete) and body == stored.victim[start : start + len(body)]


def test_a_flipped_byte_is_caught_by_a_range_read_with_no_cached_plan(stored: Stored) -> None:
    """A range read on a fresh server plans only the segments it touches: their frames are checked too."""
    sha = hashlib.sha256(stored.victim).hexdigest()
    start, end = _flip(stored.hub, sha)
    hub = stored.fresh_hub()
    assert len(hub.reader.plans) == 0  # so the read goes through the range plan
    with pytest.raises(IntegrityError):
        b"".join(hub.read(sha, start + 1, end - 1))
    # The whole plan the range read had built in the background catches it as well.
    hub.reader.wait_for_plans()
    assert len(hub.reader.plans) == 1
    with pytest.raises(IntegrityError):
        b"".join(hub.read(sha, start + 1, end - 1))
    assert b"".join(hub.read(sha, 0, start)) == stored.victim[:start]


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "range"])
def test_a_segment_missing_from_the_catalog_is_never_served_as_a_short_body(stored: Stored, whole: bool) -> None:
    """With no whole-file hash at the end, the pieces of a read must tile it: a gap is an error."""
    sha = hashlib.sha256(stored.victim).hexdigest()
    with stored.hub.session() as s:
        segment = s.scalars(select(FileSegment).where(FileSegment.file_sha256 == sha, FileSegment.seq == 2)).one()
        gap = (segment.offset, segment.offset + segment.length)
        s.delete(segment)
    hub = stored.fresh_hub()
    start, end = (0, len(stored.victim)) if whole else (gap[0] - 10, gap[1] + 10)
    received = bytearray()
    with pytest.raises(IntegrityError, match=f"no frame for byte {gap[0]} of file {sha}"):
        for chunk in hub.read(sha, start, end):
            received += chunk
    assert bytes(received) == stored.victim[start : start + len(received)] and start + len(received) <= gap[0]
