import numpy as np
import pytest
import torch

from refseg_bench import mask_counts, scorer
from refseg_bench.scorer import Scorer, ScoringError, episode_totals
from refseg_bench.scorer_reference import reference_episode_totals, reference_scores


def _episodes(n=24, seed=0, kind="prob", max_side=90):
    """Random episodes of mixed sizes (1x1 up to max_side), 255 pixels included."""
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for i in range(n):
        h, w = (1, 1) if i == 0 else rng.integers(1, max_side, size=2)
        label = (rng.random((h, w)) < 0.4).astype(np.uint8)
        label[rng.random((h, w)) < 0.15] = 255
        prob = rng.random((h, w), dtype=np.float32)
        prob[rng.random((h, w)) < 0.05] = 0.5  # exact ties: background under pred > 0.5
        pred = {"prob": torch.from_numpy(prob),
                "prob64": torch.from_numpy(prob.astype(np.float64)),
                "half": torch.from_numpy(prob).half(),  # the torch (GPU-like) code path
                "bool": torch.from_numpy(prob > 0.5),
                "binary_float": torch.from_numpy((prob > 0.5).astype(np.float32))}[kind]
        preds.append(pred)
        labels.append(torch.from_numpy(label))
    return preds, labels


@pytest.mark.parametrize("kind", ["prob", "prob64", "half", "bool", "binary_float"])
@pytest.mark.parametrize("size", [None, 17, 64])
@pytest.mark.parametrize("ignore", [True, False])
def test_matches_numpy_reference(kind, size, ignore):
    preds, labels = _episodes(kind=kind, seed=len(kind) * 100 + (size or 0) + ignore)
    got = episode_totals(preds, labels, size=size, ignore=ignore)
    assert got.dtype == torch.int64 and got.shape == (len(preds), 4)
    np.testing.assert_array_equal(
        got.numpy(), reference_episode_totals(preds, labels, size=size, ignore=ignore))


@pytest.mark.parametrize("size", [None, 17])
@pytest.mark.parametrize("ignore", [True, False])
def test_accelerator_packing_path_on_cpu(monkeypatch, size, ignore):
    # GPUs count a whole batch with torch ops instead of NumPy; run that path here too.
    monkeypatch.setattr(scorer, "count_totals", mask_counts.count_totals_torch)
    for kind in ("prob", "half", "bool"):
        preds, labels = _episodes(n=12, seed=7, kind=kind)
        np.testing.assert_array_equal(
            episode_totals(preds, labels, size=size, ignore=ignore).numpy(),
            reference_episode_totals(preds, labels, size=size, ignore=ignore))
    preds, labels = _episodes(n=12, seed=7, kind="half")
    preds[3] = torch.full_like(preds[3], 2.0)
    with pytest.raises(ScoringError, match="episode 3: prediction has values"):
        episode_totals(preds, labels)


def test_numpy_labels_and_threshold():
    preds, labels = _episodes(n=6, seed=2)
    np_labels = [lab.numpy() for lab in labels]
    np.testing.assert_array_equal(episode_totals(preds, np_labels, threshold=0.8).numpy(),
                                  reference_episode_totals(preds, labels, threshold=0.8))


def test_hand_computed_totals():
    pred = torch.tensor([[0.9, 0.9, 0.1],
                         [0.5, 0.7, 0.2]])
    label = torch.tensor([[1, 0, 255],
                          [1, 255, 0]], dtype=torch.uint8)
    # pred > 0.5: [[1,1,0],[0,1,0]]; valid pixels: (0,0) (0,1) (1,0) (1,2)
    # fg: inter {(0,0)} = 1, union {(0,0),(0,1),(1,0)} = 3
    # bg: inter {(1,2)} = 1, union {(0,1),(1,0),(1,2)} = 3
    assert episode_totals([pred], [label]).tolist() == [[1, 3, 1, 3]]
    # ignore=False: 255 is background; (0,2) is TN, (1,1) is FP
    assert episode_totals([pred], [label], ignore=False).tolist() == [[1, 4, 2, 5]]


def test_size_resizes_label_nearest_and_prediction_bilinear():
    label = torch.zeros(4, 4, dtype=torch.uint8)
    label[0, 0] = 1  # nearest to 2x2 keeps source pixels (0,0) (0,2) (2,0) (2,2)
    label[1, 1] = 255  # dropped by the nearest resize
    pred = torch.zeros(4, 4)
    pred[:2, :2] = 1.0  # bilinear 4->2 averages 2x2 blocks: top-left 1, others 0
    assert episode_totals([pred], [label], size=2).tolist() == [[1, 1, 3, 3]]


def test_empty_batch_and_empty_image():
    assert episode_totals([], []).shape == (0, 4)
    got = episode_totals([torch.zeros(0, 5)], [torch.zeros(0, 5, dtype=torch.uint8)])
    assert got.tolist() == [[0, 0, 0, 0]]


@pytest.mark.parametrize("bad", [2, 128, 254])
def test_bad_label_values_name_the_episode(bad):
    preds, labels = _episodes(n=3)
    labels[2] = labels[2].clone()
    labels[2][0, 0] = bad
    for size in (None, 8):
        with pytest.raises(ScoringError, match=rf"episode 2: label has values \[{bad}\]"):
            episode_totals(preds, labels, size=size)


def test_shape_dtype_and_range_errors():
    preds, labels = _episodes(n=2)
    with pytest.raises(ScoringError, match="episode 1: prediction has shape"):
        episode_totals([preds[0], preds[1].T.contiguous()], labels)
    with pytest.raises(ScoringError, match="2 predictions but 1 labels"):
        episode_totals(preds, labels[:1])
    with pytest.raises(ScoringError, match="label dtype is torch.int64"):
        episode_totals(preds, [lab.long() for lab in labels])
    for bad in (torch.full_like(preds[1], 3.0), torch.full_like(preds[1], -0.1),
                torch.full_like(preds[1], float("nan"))):
        for dtype in (torch.float32, torch.float64, torch.float16):
            with pytest.raises(ScoringError, match="episode 1: prediction has values"):
                episode_totals([preds[0].to(dtype), bad.to(dtype)], labels)


def test_negative_zero_is_a_valid_probability():
    pred = torch.tensor([[-0.0, 1.0]])
    label = torch.tensor([[0, 1]], dtype=torch.uint8)
    assert episode_totals([pred], [label]).tolist() == [[1, 1, 1, 1]]


# --- Scorer --------------------------------------------------------------------------------


def _scored(n=40, seed=0, classes=(1, 2, 3, 4)):
    preds, labels = _episodes(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    class_ids = [int(c) for c in rng.choice(classes[:3], size=n)]  # class 4 never sampled
    return preds, labels, class_ids


def test_miou_hand_computed_and_unsampled_class_is_zero():
    s = Scorer([10, 20, 30])
    s.add([10, 10, 20], torch.tensor([[1, 4, 5, 8], [3, 4, 6, 7], [0, 0, 9, 9]]))
    out = s.compute()
    # class 10: 4/8 = 50%; class 20: union 0 -> 0/max(0, 1) = 0%; class 30 unsampled -> 0
    assert out.class_iou == {10: 50.0, 20: 0.0, 30: None}
    assert out.miou == pytest.approx(50.0 / 3)
    assert out.unsampled_classes == [30]
    assert out.class_episodes == {10: 2, 20: 1, 30: 0} and out.n_episodes == 3
    # FB: fg 4/8, bg 20/24
    assert out.fg_iou == pytest.approx(50.0) and out.bg_iou == pytest.approx(100 * 20 / 24)
    assert out.fbiou == pytest.approx((50.0 + 100 * 20 / 24) / 2)
    assert out.to_dict()["class_iou"][30] is None


def test_scores_match_reference_and_batches_add_up():
    preds, labels, cids = _scored()
    one = Scorer([1, 2, 3, 4])
    totals = one.update(preds, labels, cids)
    miou, fbiou = reference_scores(cids, reference_episode_totals(preds, labels), [1, 2, 3, 4])
    assert one.compute().miou == pytest.approx(miou, abs=1e-9)
    assert one.compute().fbiou == pytest.approx(fbiou, abs=1e-9)
    assert one.compute().unsampled_classes == [4]

    two = Scorer([1, 2, 3, 4])
    two.update(preds[:15], labels[:15], cids[:15])
    two.update(preds[15:], labels[15:], cids[15:])
    resumed = Scorer([1, 2, 3, 4])
    resumed.add(cids, totals)
    for s in (two, resumed):
        for name in ("inter", "union", "episodes", "fb"):
            assert torch.equal(getattr(s, name), getattr(one, name))
        assert s.compute() == one.compute()


def test_scorers_over_disjoint_episodes_sum_to_one():
    preds, labels, cids = _scored(n=30, seed=3)
    one = Scorer([1, 2, 3, 4])
    one.update(preds, labels, cids)
    even, odd = Scorer([1, 2, 3, 4]), Scorer([1, 2, 3, 4])
    even.update(preds[::2], labels[::2], cids[::2])
    odd.update(preds[1::2], labels[1::2], cids[1::2])
    summed = {n: getattr(even, n) + getattr(odd, n) for n in ("inter", "union", "episodes", "fb")}
    assert all(torch.equal(summed[n], getattr(one, n)) for n in summed)
    even.merge(odd)
    assert even.compute() == one.compute()


def test_oracle_scores_100_and_empty_scores_0():
    _, labels, cids = _scored(n=20, seed=4)
    oracle = [(lab == 1).float() for lab in labels]
    empty = [torch.zeros(lab.shape) for lab in labels]
    s = Scorer([1, 2, 3])
    s.update(oracle, labels, cids)
    assert s.compute().miou == 100.0 and s.compute().fbiou == 100.0
    s = Scorer([1, 2, 3])
    s.update(empty, labels, cids)
    out = s.compute()
    assert out.miou == 0.0 and out.fg_iou == 0.0
    # empty prediction: bg inter = valid bg pixels, bg union = all valid pixels
    valid = sum(int((lab != 255).sum()) for lab in labels)
    bg = sum(int((lab == 0).sum()) for lab in labels)
    assert out.bg_iou == pytest.approx(100 * bg / valid)
    assert out.fbiou == pytest.approx(50 * bg / valid)


def test_scorer_errors():
    s = Scorer([1, 2])
    preds, labels = _episodes(n=2)
    with pytest.raises(ScoringError, match=r"class ids \[7\] are not classes of this fold"):
        s.update(preds, labels, [1, 7])
    with pytest.raises(ScoringError, match="2 predictions but 1 class ids"):
        s.update(preds, labels, [1])
    with pytest.raises(ScoringError, match=r"shape \(2, 4\)"):
        s.add([1, 2], torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ScoringError, match="integer pixel counts"):
        s.add([1, 2], torch.zeros(2, 4))
    with pytest.raises(ScoringError, match="distinct"):
        Scorer([1, 1])
    assert s.compute().n_episodes == 0  # nothing was added by the failed calls
    s.all_reduce()  # no process group: a no-op
    s.add([1], torch.tensor([[1, 2, 3, 4]]))
    assert s.compute().class_iou[1] == 50.0


def _all_reduce_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        preds, labels, cids = _scored(n=30, seed=3)
        s = Scorer([1, 2, 3, 4])
        s.update(preds[rank::world], labels[rank::world], cids[rank::world])
        s.all_reduce()
        try:
            s.all_reduce()
            twice = "allowed"
        except RuntimeError:
            twice = "refused"
        torch.save({"state": [s.inter, s.union, s.episodes, s.fb], "twice": twice},
                   f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_all_reduce_over_two_gloo_processes_equals_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_all_reduce_worker, args=(2, f"file://{tmp_path}/rendezvous", str(tmp_path / "s")),
             nprocs=2, join=True)
    preds, labels, cids = _scored(n=30, seed=3)
    single = Scorer([1, 2, 3, 4])
    single.update(preds, labels, cids)
    for rank in range(2):
        got = torch.load(tmp_path / f"s.{rank}")
        assert got["twice"] == "refused"
        for a, b in zip(got["state"], [single.inter, single.union, single.episodes, single.fb],
                        strict=True):
            assert torch.equal(a, b)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    for size in (None, 33):
        preds, labels = _episodes(n=20, seed=9)
        cpu = episode_totals(preds, labels, size=size)
        gpu = episode_totals([p.cuda() for p in preds], labels, size=size)
        assert gpu.device.type == "cuda"
        assert torch.equal(gpu.cpu(), cpu)
    s = Scorer([1, 2, 3], device="cuda")
    s.update([p.cuda() for p in preds], labels, [1] * len(preds))
    assert s.inter.device.type == "cuda"


# --- exactness of the CPU kernel in every prediction dtype --------------------------------

_EDGE_F32 = [0.0, -0.0, 1.0, 0.5, float(np.nextafter(np.float32(0.5), 1, dtype=np.float32)),
             float(np.nextafter(np.float32(0.5), 0, dtype=np.float32)), 0.3, 0.25, 0.75,
             float(np.float32(1e-30)), float(np.nextafter(np.float32(1.0), 0, dtype=np.float32))]


def _edge_episodes(dtype: torch.dtype, n: int = 12, seed: int = 0):
    """Random probabilities in ``dtype`` with a third of the pixels on edge values: exactly
    the threshold, its neighbours in the dtype, 0, -0.0, 1 and subnormals."""
    rng = np.random.default_rng(seed)
    edges = torch.tensor(_EDGE_F32, dtype=torch.float32).to(dtype)
    if dtype.is_floating_point:  # the dtype's own neighbours of 0.5
        half = torch.tensor(0.5, dtype=dtype)
        edges = torch.cat([edges, torch.nextafter(half.float(), torch.tensor(1.0)).to(dtype)[None],
                           (half.float() - torch.finfo(dtype).eps / 4).to(dtype)[None]])
    preds, labels = [], []
    for i in range(n):
        h, w = (1, 1) if i == 0 else rng.integers(1, 70, size=2)
        prob = torch.from_numpy(rng.random((h, w), dtype=np.float32)).to(dtype)
        pick = torch.from_numpy(rng.random((h, w)) < 0.35)
        prob[pick] = edges[torch.from_numpy(rng.integers(len(edges), size=int(pick.sum())))]
        label = (rng.random((h, w)) < 0.4).astype(np.uint8)
        label[rng.random((h, w)) < 0.15] = 255
        preds.append(prob)
        labels.append(torch.from_numpy(label))
    return preds, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.0, 1.0, float(np.float32(0.5) + 2 ** -24)])
@pytest.mark.parametrize("ignore", [True, False])
def test_cpu_kernel_exact_on_edge_values(dtype, threshold, ignore):
    preds, labels = _edge_episodes(dtype, seed=int(threshold * 1000) + ignore)
    for size in (None, 23):
        got = episode_totals(preds, labels, size=size, ignore=ignore, threshold=threshold)
        want = reference_episode_totals(preds, labels, size=size, ignore=ignore,
                                        threshold=threshold)
        np.testing.assert_array_equal(got.numpy(), want, err_msg=f"size={size}")


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64])
@pytest.mark.parametrize("threshold", [0.5, 0.0, 1.0, -0.5])
def test_cpu_kernel_exact_on_masks(dtype, threshold):
    preds, labels = _episodes(n=10, seed=11, kind="bool")
    preds = [p.to(dtype) for p in preds]
    np.testing.assert_array_equal(
        episode_totals(preds, labels, threshold=threshold).numpy(),
        reference_episode_totals(preds, labels, threshold=threshold))


@pytest.mark.parametrize("n", [1, 7, 8, 9, 16, 23, 1001])
def test_cpu_bool_kernel_words_and_tail_pixels(n):
    """Bool masks are counted 8 pixels per 64-bit word and the last n % 8 one by one: every
    label value in both parts, and a bad value found in either."""
    rng = np.random.default_rng(n)
    label = torch.from_numpy(rng.choice(np.array([0, 1, 255], np.uint8), size=(1, n)))
    pred = torch.from_numpy(rng.random((1, n)) < 0.5)
    for ignore in (True, False):
        np.testing.assert_array_equal(
            episode_totals([pred], [label], ignore=ignore).numpy(),
            reference_episode_totals([pred], [label], ignore=ignore))
    for at in {0, n // 8 * 8 - 1, n - 1} - {-1}:
        bad = label.clone()
        bad[0, at] = 3
        with pytest.raises(ScoringError, match=r"label has values \[3\]"):
            episode_totals([pred], [bad])


@pytest.mark.parametrize("ignore", [True, False])
def test_full_foreground_fills_every_byte_lane(ignore):
    # All-foreground label and prediction: every byte lane of the counted words is set;
    # one image ends in tail pixels, the other exactly on a word.
    preds = [torch.ones(150, 170), torch.ones(127, 64) > 0]
    labels = [torch.ones(150, 170, dtype=torch.uint8), torch.ones(127, 64, dtype=torch.uint8)]
    got = episode_totals(preds, labels, ignore=ignore)
    want = [[150 * 170, 150 * 170, 0, 0], [127 * 64, 127 * 64, 0, 0]]
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(got.numpy(), reference_episode_totals(preds, labels,
                                                                        ignore=ignore))


def test_cpu_kernel_agrees_with_the_accelerator_path_on_all_dtypes():
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.bool):
        preds, labels = _edge_episodes(torch.float32, seed=3)
        preds = [p > 0.5 if dtype == torch.bool else p.to(dtype) for p in preds]
        cpu = episode_totals(preds, labels)
        torch_path = mask_counts.count_totals_torch(preds, labels, torch.device("cpu"),
                                                    size=None, ignore=True, threshold=0.5)
        assert torch.equal(cpu, torch_path), dtype


def test_half_precision_negative_zero_and_out_of_range():
    label = torch.tensor([[0, 1, 255]], dtype=torch.uint8)
    for dtype in (torch.float16, torch.bfloat16):
        pred = torch.tensor([[-0.0, 0.75, 0.5]], dtype=dtype)  # -0.0: sign bit set, valid
        assert episode_totals([pred], [label]).tolist() == [[1, 1, 1, 1]]
        for bad in (-0.25, 1.5, float("nan"), float("inf")):
            with pytest.raises(ScoringError, match="episode 0: prediction has values"):
                episode_totals([torch.tensor([[0.2, bad, 0.1]], dtype=dtype)], [label])


def test_negative_zero_patch_stays_background_after_resizing():
    pred = torch.full((6, 6), -0.0, dtype=torch.float16)
    label = torch.zeros(6, 6, dtype=torch.uint8)
    assert episode_totals([pred], [label], size=3).tolist() == [[0, 0, 9, 9]]


def test_non_contiguous_and_grad_predictions():
    preds, labels = _episodes(n=6, seed=12)
    transposed = [p.T.contiguous().T for p in preds]  # same values, column-major strides
    strided = [p.t() for p in transposed]
    want = reference_episode_totals(preds, labels)
    np.testing.assert_array_equal(episode_totals(transposed, labels).numpy(), want)
    assert episode_totals(strided, [lab.t() for lab in labels]).shape == (6, 4)
    grad = [p.clone().requires_grad_(True) for p in preds]
    np.testing.assert_array_equal(episode_totals(grad, labels).numpy(), want)
