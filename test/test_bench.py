"""Benchmark modes that compare network variants (their figures are printed, never asserted)."""

import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.bench_variants import compare_weights, region_cost
from ros2_ttvos.model import TTVOS, TTVOSConfig
from ros2_ttvos.train_bench import THREAD_CASES, WAIT_POLICIES, thread_settings_speed, training_speed


def test_other_weights_are_timed_beside_the_shipped_ones():
    full = checkpoint.SHIPPED_WEIGHTS.with_name("ttvos_lite0_full.pt")
    rows = compare_weights([checkpoint.SHIPPED_WEIGHTS, full], frames=1, threads=1)
    assert len(rows) == 8  # 2 weights x 2 sizes x 1 and 4 objects
    assert {(r["weights"], r["input"][0], r["objects"]) for r in rows} == {
        (str(w), h, n) for w in (checkpoint.SHIPPED_WEIGHTS, full) for h in (480, 240) for n in (1, 4)
    }
    for row in rows:
        assert row["backbone"] == "efficientnet-lite0" and row["median_ms"] > 0
        if row["weights"] == str(checkpoint.SHIPPED_WEIGHTS):
            assert row["speed_vs_first"] == 1.0
    by_name = {r["weights"]: r["gflops_per_frame"] for r in rows}
    assert by_name[str(full)] > by_name[str(checkpoint.SHIPPED_WEIGHTS)]  # full rank costs more


def test_training_steps_are_timed_with_one_and_two_backbone_blocks_trained():
    model = TTVOS(TTVOSConfig(), pretrained_backbone=False)
    block = model.backbone.blocks[14]  # trained only in the second case
    before = [p.detach().clone() for p in block.parameters()]
    cases = [("fp32", True, 1), ("fp32", True, 2)]
    rows = training_speed(model, torch.device("cpu"), cases, clips=1, frames=2, size=(64, 96), rounds=1)
    assert [(r["precision"], r["channels_last"], r["trained_blocks"]) for r in rows] == cases
    assert all(r["frames_per_s"] > 0 and r["clips"] * r["frames"] == 2 for r in rows)
    assert any(not torch.equal(a, b) for a, b in zip(before, block.parameters(), strict=True))


def test_the_search_region_is_timed_on_and_off_side_by_side():
    model = checkpoint.build_model(checkpoint.load(checkpoint.SHIPPED_WEIGHTS)).eval()
    rows = region_cost(model, frames=1)
    assert {(r["input"][0], r["objects"]) for r in rows} == {(h, n) for h in (480, 240) for n in (1, 4)}
    for row in rows:
        assert row["median_ms_with_region"] > 0 and row["median_ms_without_region"] > 0
        on, off = row["median_ms_with_region"], row["median_ms_without_region"]
        assert row["region_share_of_step"] == (on - off) / on


def test_training_threads_are_timed_per_wait_policy_each_in_its_own_process():
    rows = thread_settings_speed(rounds=1, clips=1, frames=2, objects=1, size=(64, 96))
    assert [(r["threads"], r["wait_policy"]) for r in rows] == THREAD_CASES
    for row in rows:
        assert row["wait_env"] == WAIT_POLICIES[row["wait_policy"]]  # the policy reached the process
        assert row["frames_per_s"] > 0 and row["channels_last"] and row["size"] == [64, 96]
