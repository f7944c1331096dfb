"""Loader batches handed from workers to the main process in shared memory: the same
episodes, arrays that outlive the batch object, and the ordinary path when shared memory
has no room."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from refseg_bench import loading, shared_batches
from refseg_bench.datasets.base import DatasetError
from refseg_bench.episodes import Annotation, Episode, EpisodeSpec
from refseg_bench.loading import LoadedEpisode, LoadFailure
from refseg_bench.shared_batches import PackedBatch, pack, unpack


def _episode(i: int) -> LoadedEpisode:
    rng = np.random.default_rng(i)
    image = rng.integers(0, 256, (30 + i, 41, 3), dtype=np.uint8)
    label = rng.integers(0, 2, (30 + i, 41), dtype=np.uint8)
    label[0, :5] = 255
    spec = EpisodeSpec(i, 1, 7, f"q{i}", ("s",), i)
    ann = Annotation("point", raster=label == 1, points=np.array([[3.0, 4.0]], np.float32),
                     point_labels=np.array([1]))
    # A strided support image travels in band (numpy pickles only contiguous data apart).
    ep = Episode(spec, "cat", image, [image[::2, ::3]], [ann], [label])
    return LoadedEpisode(spec, ep, label)


def _same(a: LoadedEpisode, b: LoadedEpisode) -> None:
    assert a.spec == b.spec and a.skip_reason == b.skip_reason
    pairs = [(a.label, b.label), (a.episode.query_image, b.episode.query_image),
             (a.episode.support_images[0], b.episode.support_images[0]),
             (a.episode.support_masks[0], b.episode.support_masks[0]),
             (a.episode.annotations[0].raster, b.episode.annotations[0].raster),
             (a.episode.annotations[0].points, b.episode.annotations[0].points)]
    for x, y in pairs:
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def test_a_batch_round_trips_with_its_arrays_as_views_of_one_shared_buffer():
    items = [_episode(0), LoadedEpisode(EpisodeSpec(1, 1, 7, "q", ("s",), 1), None, None,
                                        "support s: empty"), _episode(2)]
    packed = pack(items)
    assert isinstance(packed, PackedBatch) and packed.buffer.is_shared()
    # Every contiguous array's bytes are in the buffer, once (the label is also the
    # support mask); the strided support image is not.
    arrays = {id(a): a for e in (items[0], items[2]) for a in (
        e.label, e.episode.query_image, e.episode.support_images[0],
        e.episode.support_masks[0], *vars(e.episode.annotations[0]).values())
        if isinstance(a, np.ndarray)}
    assert packed.buffer.numel() == sum(a.nbytes for a in arrays.values()
                                        if a.flags.c_contiguous)
    back = unpack(packed)
    assert back[1].episode is None and back[1].skip_reason == "support s: empty"
    _same(items[0], back[0])
    _same(items[2], back[2])
    query = back[0].episode.query_image
    assert query.flags.writeable  # as an unpickled array is: methods may write in place
    assert np.shares_memory(query, packed.buffer.numpy())
    del packed, back[2]
    gc.collect()
    np.testing.assert_array_equal(query, items[0].episode.query_image)  # buffer kept alive


def test_a_batch_without_array_data_or_without_room_travels_as_it_is(monkeypatch):
    failure = [LoadFailure(DatasetError("missing file x.jpg"))]
    assert pack(failure) is failure
    items = [_episode(0)]
    monkeypatch.setattr(shared_batches, "shm_room", lambda nbytes: False)
    assert pack(items) is items

    def no_segment(size, **kwargs):
        raise RuntimeError("unable to write to file </torch_1_2>: No space left on device")

    monkeypatch.setattr(shared_batches, "shm_room", lambda nbytes: True)
    monkeypatch.setattr(shared_batches, "_failed", False)
    monkeypatch.setattr(torch.UntypedStorage, "_new_shared", no_segment)
    assert pack(items) is items
    assert unpack(items) is items
    monkeypatch.undo()  # segments can be made again, but this process no longer tries
    monkeypatch.setattr(shared_batches, "_failed", True)
    assert pack(items) is items
    monkeypatch.setattr(shared_batches, "_failed", False)
    assert isinstance(pack(items), PackedBatch)


CHILD = """
import resource, sys
sys.path.insert(0, {tests!r})
from test_shared_batches import _episode
from refseg_bench import shared_batches
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
items = [_episode(0)]
print(shared_batches.pack(items) is items)
"""


def test_a_file_size_limit_sends_batches_the_ordinary_way_and_leaves_no_segment():
    """Under ``RLIMIT_FSIZE`` (a test's stand-in for a full disk) torch 2.14 fails to size a
    new segment and leaves it behind, empty (19 of them after one run of the CLI's full-disk
    test); the limit is checked before any segment is made."""
    import subprocess
    import sys
    from pathlib import Path

    code = CHILD.format(tests=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert out.strip() == "True", err
    shm = Path(shared_batches.SHM_DIR)
    if not shm.is_dir():
        pytest.skip("no /dev/shm to look in")
    # torch names a segment /torch_<pid>_<random>_<counter>
    left = [p for p in shm.glob("torch_*") if p.name.split("_")[1] == str(proc.pid)]
    for p in left:
        p.unlink()
    assert not left


def test_shm_room_reads_the_filesystem(monkeypatch, tmp_path):
    monkeypatch.setattr(shared_batches, "SHM_DIR", str(tmp_path))
    assert shared_batches.shm_room(1)
    assert not shared_batches.shm_room(1 << 62)
    monkeypatch.setattr(shared_batches, "SHM_DIR", str(tmp_path / "absent"))
    assert shared_batches.shm_room(1 << 62)  # nothing to ask: let torch decide


class _Episodes(torch.utils.data.Dataset):
    """Stands in for ``EpisodeDataset`` (the loader only indexes it)."""

    def __len__(self):
        return 7

    def __getitem__(self, i):
        return _episode(i)


def _batches(monkeypatch, workers: int) -> list[list[LoadedEpisode]]:
    monkeypatch.setattr(loading, "EpisodeDataset", lambda *a, **k: _Episodes())
    seen = []
    monkeypatch.setattr(loading, "unpack", lambda b: seen.append(type(b)) or unpack(b))
    out = list(loading.episode_loader(None, list(range(7)), "mask", batch_size=3,
                                      num_workers=workers))
    return out, seen


def test_worker_batches_arrive_packed_and_equal_to_in_process_ones(monkeypatch):
    direct, seen0 = _batches(monkeypatch, 0)
    shared, seen2 = _batches(monkeypatch, 2)
    assert seen0 == [list] * 3 and seen2 == [PackedBatch] * 3
    assert [len(b) for b in shared] == [3, 3, 1]
    for a, b in zip(sum(direct, []), sum(shared, []), strict=True):
        _same(a, b)


def test_without_room_the_workers_send_batches_the_ordinary_way(monkeypatch):
    monkeypatch.setattr(shared_batches, "shm_room", lambda nbytes: False)  # forked: workers too
    shared, seen = _batches(monkeypatch, 1)
    assert seen == [list] * 3
    for a, b in zip([_episode(i) for i in range(7)], sum(shared, []), strict=True):
        _same(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_a_packed_batch_pins_its_one_buffer():
    packed = pack([_episode(0)]).pin_memory()
    assert packed.buffer.is_pinned()
    back = unpack(packed)
    assert torch.from_numpy(back[0].episode.query_image).is_pinned()
    _same(_episode(0), back[0])


def test_a_worker_batch_is_packed_when_its_queue_pickles_it(monkeypatch):
    """``Outgoing`` (the workers' collate result) packs in ``__reduce__``, i.e. in the result
    queue's feeder thread; whatever goes wrong there, the batch still arrives as it is."""
    from multiprocessing.reduction import ForkingPickler

    items = [_episode(0), _episode(1)]
    back = ForkingPickler.loads(ForkingPickler.dumps(shared_batches.Outgoing(items)))
    assert isinstance(back, PackedBatch)
    for a, b in zip(items, unpack(back), strict=True):
        _same(a, b)

    def broken(items):
        raise ValueError("anything")

    monkeypatch.setattr(shared_batches, "pack", broken)
    back = ForkingPickler.loads(ForkingPickler.dumps(shared_batches.Outgoing(items)))
    assert isinstance(back, list)
    for a, b in zip(items, unpack(back), strict=True):
        _same(a, b)
