"""Scripted Push-T demonstrator: geometry against shapely, exact replica predictions, success."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

pytest.importorskip("gym_pusht")
sg = pytest.importorskip("shapely.geometry")

from sim_bridge import make_task  # noqa: E402
from sim_bridge.pusht_expert import (  # noqa: E402
    _TEE_HULL_POINTS,
    BAR,
    GOAL_POSE,
    OUTLINE,
    STEM,
    ConvexPolygon,
    dist_to_tee,
    keypoint_cost,
)


def _tee_polygon():
    return sg.box(BAR[0], BAR[2], BAR[1], BAR[3]).union(sg.box(STEM[0], STEM[2], STEM[1], STEM[3]))


def test_geometry_matches_shapely_and_gym_pusht():
    tee = _tee_polygon()
    assert sg.Polygon(OUTLINE).equals(tee)
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(-120, 200, (500, 2)):
        assert dist_to_tee(x, y) == pytest.approx(tee.distance(sg.Point(x, y)), abs=1e-9)
    # the outline is gym-pusht's T: compare with the env's block shapes at pose 0
    t = make_task("pusht")
    t.reset(0)
    local = [tuple(v) for s in t.env.block.shapes for v in s.get_vertices()]
    assert sg.MultiPoint(local).convex_hull.equals(sg.MultiPoint(OUTLINE).convex_hull)
    assert keypoint_cost(*GOAL_POSE) == pytest.approx(0.0, abs=1e-12)
    assert keypoint_cost(GOAL_POSE[0] + 3.0, GOAL_POSE[1] - 4.0, GOAL_POSE[2]) == pytest.approx(5.0)


def test_padded_hull_and_segment_tests_against_shapely():
    poly = ConvexPolygon.padded_hull(_TEE_HULL_POINTS, 17.5, 8)
    ref = sg.Polygon(poly.v)
    hull = sg.MultiPoint(_TEE_HULL_POINTS).convex_hull
    # contains the true offset of the hull
    assert ref.contains(hull.buffer(17.4, quad_segs=32))
    rng = np.random.default_rng(1)
    for _ in range(400):
        a = rng.uniform(-150, 200, 2)
        b = rng.uniform(-150, 200, (4, 2))
        vec = poly.segments_clear(a[0], a[1], b)
        for k, (bx, by) in enumerate(b):
            seg = sg.LineString([a, (bx, by)])
            crosses_interior = seg.intersection(ref).length > 1e-6
            assert poly.segment_clear(a[0], a[1], bx, by) == (not crosses_interior)
            assert bool(vec[k]) == (not crosses_interior)
        assert poly.contains(*a) == ref.buffer(1e-9).contains(sg.Point(a))


def test_replica_predicts_the_env_exactly():
    """A plan simulated on the replica space lands the block where the env puts it."""
    t = make_task("pusht", "fixed-color")
    for seed in (2, 9):
        t.reset(seed)
        ex = t.make_expert(seed=seed)
        ex.reset()
        for _ in range(3):
            first = ex.select_action(None)  # plans, returns the first action, queues the rest
            pred = ex.last_prediction
            assert pred is not None
            rest = list(ex._queue)
            ex._queue.clear()
            for a in [first, *rest]:
                t.step(np.asarray(a))
            b = t.env.block
            assert (b.position[0], b.position[1]) == pytest.approx(pred[:2], abs=1e-6)
            assert b.angle == pytest.approx(pred[2], abs=1e-9)


def test_expert_succeeds_on_fixed_seeds():
    t = make_task("pusht", "rand-color")
    for seed in (0, 4):
        obs = t.reset(seed)
        ex = t.make_expert(seed=seed)
        ex.reset()
        success = False
        while True:
            obs, success, info = t.step(ex.select_action(obs))
            if ex.done or info["truncated"]:
                break
        assert success, f"seed {seed}: coverage {t.last_coverage:.3f} after {t.steps} steps"
        assert t.last_coverage >= 0.97 and t.steps < 300


def test_expert_noise_makes_demonstrations_differ_and_is_seeded():
    def first_plan(expert_seed: int, noise: float) -> list[tuple[float, float]]:
        t = make_task("pusht")
        t.reset(3)
        ex = t.make_expert(seed=expert_seed, noise=noise)
        return [tuple(ex.select_action(None))] + list(ex._queue)

    assert first_plan(1, 0.3) == first_plan(1, 0.3)
    plans = {tuple(first_plan(s, 0.3)) for s in range(4)}
    assert len(plans) > 1
    with pytest.raises(ValueError, match="noise"):
        make_task("pusht").make_expert(noise=2.0)
