"""A scripted Push-T demonstrator that reads the simulator state.

Push-T ships no scripted expert; this one is a greedy push planner (see docs/simulation.md):

1. From an out-of-contact state, enumerate candidate pushes: points on the faces of the T with
   the push along the inward normal, and pushes into the convex corners, each at several depths.
2. For each, route the agent to a pre-contact point around the T's padded convex outline
   (string-pulled tangent path, inside [0, 512]); the approach is integrated exactly with the
   env's PD law and must keep clear of the block, so the block does not move on the way.
3. Simulate push + retract on a replica pymunk space (same bodies and parameters as gym-pusht)
   and score the reduction of a keypoint cost per control step.
4. Execute the chosen push's actions on the real env, then plan again. Stop at the target
   coverage (0.97 by default, just past the env's 0.95 for clean endings).

Noise makes demonstrations differ: contact points are jittered along each face and the push is
drawn among the near-best candidates.

Facts this relies on (SIM-FACTS.md): the agent is kinematic (a block never slows it, so its path
can be integrated without physics), the block has no friction and stops dead when released, and
re-simulating from an in-contact state diverges (cached contact impulses): plans start only from
out-of-contact states.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pymunk
from gym_pusht.envs.pusht import PushTEnv

from sim_bridge.task import register_expert

if TYPE_CHECKING:
    from sim_bridge.pusht import PushTTask

# --- T geometry in the block frame (gym-pusht's add_tee with scale 30) -------------------------
BAR = (-60.0, 60.0, 0.0, 30.0)  # xmin, xmax, ymin, ymax
STEM = (-15.0, 15.0, 30.0, 120.0)
# outline, counter-clockwise in (x right, y up) maths orientation
OUTLINE = np.array(
    [(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)], dtype=np.float64
)
CONVEX_CORNERS = (0, 1, 2, 4, 5, 7)  # indices into OUTLINE; 3 and 6 are the concave ones
AGENT_RADIUS = 15.0


def _outline_faces() -> list[tuple[np.ndarray, float, float, float]]:
    """Per face of the CCW outline: start point, unit direction (ex, ey) and length; the outward
    normal is (ey, -ex)."""
    faces = []
    for i in range(len(OUTLINE)):
        p, q = OUTLINE[i], OUTLINE[(i + 1) % len(OUTLINE)]
        length = float(np.hypot(*(q - p)))
        ex, ey = (q - p) / length
        faces.append((p, float(ex), float(ey), length))
    return faces


OUTLINE_FACES = _outline_faces()


def corner_normals(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Outward unit normals of the two faces that meet at outline vertex ``i``."""
    n = len(OUTLINE)
    e0 = OUTLINE[i] - OUTLINE[(i - 1) % n]
    e1 = OUTLINE[(i + 1) % n] - OUTLINE[i]
    return np.array([e0[1], -e0[0]]) / np.hypot(*e0), np.array([e1[1], -e1[0]]) / np.hypot(*e1)


GOAL_POSE = (256.0, 256.0, math.pi / 4)
KP, KV, DT, SUBSTEPS = 100.0, 20.0, 0.01, 10


def dist_to_tee(x: float, y: float) -> float:
    """Distance from a block-frame point to the T (0 inside)."""
    best = math.inf
    for xmin, xmax, ymin, ymax in (BAR, STEM):
        dx = max(xmin - x, 0.0, x - xmax)
        dy = max(ymin - y, 0.0, y - ymax)
        best = min(best, math.hypot(dx, dy))
    return best


def to_local(px: float, py: float, ox: float, oy: float, c: float, s: float) -> tuple[float, float]:
    dx, dy = px - ox, py - oy
    return c * dx + s * dy, -s * dx + c * dy


def to_world(lx: float, ly: float, ox: float, oy: float, c: float, s: float) -> tuple[float, float]:
    return ox + c * lx - s * ly, oy + s * lx + c * ly


def keypoint_cost(x: float, y: float, angle: float, goal: tuple[float, float, float] = GOAL_POSE) -> float:
    """Mean distance (px) between the T's outline vertices at this pose and at the goal pose."""
    c, s = math.cos(angle), math.sin(angle)
    cg, sg = math.cos(goal[2]), math.sin(goal[2])
    total = 0.0
    for vx, vy in OUTLINE:
        ax, ay = x + c * vx - s * vy, y + s * vx + c * vy
        bx, by = goal[0] + cg * vx - sg * vy, goal[1] + sg * vx + cg * vy
        total += math.hypot(ax - bx, ay - by)
    return total / len(OUTLINE)


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Monotone chain, counter-clockwise, no repeated end point."""
    pts = sorted(map(tuple, points.tolist()))

    def cross(o: tuple[float, ...], a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, ...]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, ...]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


class ConvexPolygon:
    """A convex polygon (CCW) with the half-plane form used by the router."""

    def __init__(self, vertices: np.ndarray):
        self.v = np.asarray(vertices, dtype=np.float64)
        n = len(self.v)
        nxt = np.roll(self.v, -1, axis=0)
        edge = nxt - self.v
        normal = np.stack([edge[:, 1], -edge[:, 0]], axis=1)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        self.n = normal
        self.c = np.einsum("ij,ij->i", normal, self.v)
        self.size = n
        self._vl = [tuple(p) for p in self.v.tolist()]
        self._nl = [tuple(p) for p in self.n.tolist()]
        self._cl = self.c.tolist()

    @classmethod
    def padded_hull(cls, points: np.ndarray, radius: float, sides: int) -> ConvexPolygon:
        """Convex hull of ``points`` grown by a circle (circumscribed ``sides``-gon, so it contains
        the true offset)."""
        r = radius / math.cos(math.pi / sides)
        ang = np.arange(sides) * 2 * math.pi / sides + math.pi / sides
        ring = np.stack([np.cos(ang), np.sin(ang)], axis=1) * r
        grown = (points[:, None, :] + ring[None, :, :]).reshape(-1, 2)
        return cls(_convex_hull(grown))

    def sees(self, x: float, y: float) -> list[bool]:
        return [nx * x + ny * y > c for (nx, ny), c in zip(self._nl, self._cl, strict=True)]

    def contains(self, x: float, y: float) -> bool:
        return all(nx * x + ny * y <= c for (nx, ny), c in zip(self._nl, self._cl, strict=True))

    def segment_clear(self, ax: float, ay: float, bx: float, by: float) -> bool:
        """True when the segment does not enter the interior (Cyrus-Beck clip)."""
        t0, t1 = 0.0, 1.0
        dx, dy = bx - ax, by - ay
        for (nx, ny), c in zip(self._nl, self._cl, strict=True):
            num = c - (nx * ax + ny * ay)
            den = nx * dx + ny * dy
            if abs(den) < 1e-12:
                if num < 0:
                    return True  # parallel and outside this edge
                continue
            t = num / den
            if den < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
            if t0 >= t1 - 1e-9:
                return True
        return False

    def segments_clear(self, ax: float, ay: float, b: np.ndarray) -> np.ndarray:
        """``segment_clear`` from one point to each row of ``b`` (K, 2), vectorised."""
        num = self.c - (self.n[:, 0] * ax + self.n[:, 1] * ay)  # (E,)
        d = b - np.array([ax, ay])
        den = d @ self.n.T  # (K, E)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = num / den
        t0 = np.where(den < -1e-12, t, 0.0).max(axis=1).clip(min=0.0)
        t1 = np.where(den > 1e-12, t, 1.0).min(axis=1).clip(max=1.0)
        parallel_out = ((np.abs(den) <= 1e-12) & (num < 0)).any(axis=1)
        return parallel_out | (t0 >= t1 - 1e-9)

    def exit_point(self, x: float, y: float, dx: float, dy: float, step: float = 2.0) -> tuple[float, float]:
        """First point outside the polygon marching from (x, y) along the unit (dx, dy)."""
        for k in range(1, 400):
            px, py = x + dx * step * k, y + dy * step * k
            if not self.contains(px, py):
                return px, py
        return x + dx * step * 400, y + dy * step * 400

    def tangent_paths(self, ax: float, ay: float, qx: float, qy: float) -> list[list[tuple[float, float]]]:
        """Vertex chains around the polygon from outside point a to outside point q, one per
        side (a -> tangent vertex -> ... -> first vertex that sees q); excludes a and q."""
        sa, sq = self.sees(ax, ay), self.sees(qx, qy)
        n = self.size
        vis_q = [sq[(j - 1) % n] or sq[j] for j in range(n)]
        out = []
        for k in range(n):
            prev_seen, seen = sa[(k - 1) % n], sa[k]
            if prev_seen == seen:
                continue
            # seen -> not seen walking CCW: go CCW; not seen -> seen: go CW
            step = 1 if prev_seen else -1
            chain = []
            j = k
            for _ in range(n):
                chain.append(self._vl[j])
                if vis_q[j]:
                    break
                j = (j + step) % n
            out.append(chain)
        return out


_TEE_HULL_POINTS = OUTLINE[list(CONVEX_CORNERS)]


@dataclass
class _Candidate:
    route: list[tuple[float, float]]  # world waypoints, last one = pre-contact point p0
    u: tuple[float, float]  # world push direction (unit)
    cc: tuple[float, float]  # world agent centre at first contact
    depth: float
    actions: list[tuple[float, float]]
    cost: float
    steps: int
    pose: tuple[float, float, float]  # predicted block (x, y, angle) after the actions


class PushTDemonstrator:
    """What the Push-T demonstrators share: the task they read, their seed and noise stream, the
    coverage at which an episode is finished, and the T's padded outlines (a tight one for
    visibility and inside tests, a looser one for route waypoints)."""

    def __init__(self, task: PushTTask, seed: int | None, finish_coverage: float, clearance: float):
        if not 0.0 < finish_coverage <= 1.0:
            raise ValueError(
                f"{type(self).__name__}: finish_coverage must be in (0, 1], got {finish_coverage}"
            )
        self.task = task
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.finish_coverage = float(finish_coverage)
        self.clearance = float(clearance)
        r = AGENT_RADIUS
        self.hull_vis = ConvexPolygon.padded_hull(_TEE_HULL_POINTS, r + clearance * 0.5, 8)
        self.hull_route = ConvexPolygon.padded_hull(_TEE_HULL_POINTS, r + clearance, 8)

    def reseed(self, seed: int | None) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @property
    def done(self) -> bool:
        return self.task.last_coverage >= self.finish_coverage


class PushTExpert(PushTDemonstrator):
    """Scripted demonstrator bound to a PushTTask; also a policy (reset/select_action).

    Parameters (all optional): ``finish_coverage`` (0.97), ``noise`` (0..1; jitter of contact
    points and the fraction below the best score a chosen push may be, 0.2), ``depths`` (push
    depths in px), ``hold_steps`` (steps the push target is held, 3), ``gap`` (px between agent
    and face before a push, 4), ``clearance`` (px kept between agent and T when routing, 5).
    """

    def __init__(
        self,
        task: PushTTask,
        seed: int | None = None,
        finish_coverage: float = 0.97,
        noise: float = 0.2,
        depths: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 40.0, 70.0),
        hold_steps: int = 3,
        gap: float = 4.0,
        clearance: float = 5.0,
        face_spacing: float = 20.0,
        max_route_steps: int = 40,
        arrive_tol: float = 8.0,
    ):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"PushTExpert: noise must be in [0, 1], got {noise}")
        if hold_steps < 1 or not depths or min(depths) <= 0:
            raise ValueError("PushTExpert: hold_steps >= 1 and positive depths are required")
        super().__init__(task, seed, finish_coverage, clearance)
        self.noise = float(noise)
        self.depths = tuple(float(d) for d in depths)
        self.hold_steps = int(hold_steps)
        self.gap = float(gap)
        self.face_spacing = float(face_spacing)
        self.max_route_steps = int(max_route_steps)
        self.arrive_tol = float(arrive_tol)
        self._queue: deque[tuple[float, float]] = deque()
        self.last_prediction: tuple[float, float, float] | None = None
        self.n_plans = 0
        self.plan_time = 0.0

    # --- policy interface ---------------------------------------------------------------------
    def reset(self) -> None:
        self._queue.clear()
        self.n_plans = 0
        self.plan_time = 0.0

    def select_action(self, obs: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Next action (obs is ignored: the expert reads the simulator)."""
        env = self.task.env
        if self.done:
            self._queue.clear()
            return np.array(env.agent.position, dtype=np.float64)
        if not self._queue:
            t0 = time.perf_counter()
            self._queue.extend(self._plan())
            self.plan_time += time.perf_counter() - t0
            self.n_plans += 1
        return np.array(self._queue.popleft(), dtype=np.float64)

    # --- planning -----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        env = self.task.env
        a, b = env.agent, env.block
        return {
            "ap": (float(a.position[0]), float(a.position[1])),
            "av": (float(a.velocity[0]), float(a.velocity[1])),
            "bp": (float(b.position[0]), float(b.position[1])),
            "ba": float(b.angle),
            "bv": (float(b.velocity[0]), float(b.velocity[1])),
            "bw": float(b.angular_velocity),
        }

    def _plan(self) -> list[tuple[float, float]]:
        self.last_prediction = None
        st = self._state()
        ox, oy = st["bp"]
        c, s = math.cos(st["ba"]), math.sin(st["ba"])
        ax, ay = st["ap"]
        lx, ly = to_local(ax, ay, ox, oy, c, s)
        if dist_to_tee(lx, ly) < AGENT_RADIUS + 1.0:
            return [self._escape(lx, ly, ox, oy, c, s)]
        cost0 = keypoint_cost(ox, oy, st["ba"])
        cands: list[_Candidate] = []
        for route, u, cc, steps_route, start in self._approaches(st, c, s):
            for depth in self.depths:
                cand = self._simulate_push(st, start, route, u, cc, depth, steps_route)
                if cand is not None:
                    cands.append(cand)
        if not cands:
            # nothing reachable from here: step away from the block and try again
            return [self._escape(lx, ly, ox, oy, c, s, far=True)]
        scores = np.array([(cost0 - k.cost) / k.steps for k in cands])
        best = float(scores.max())
        if best > 0 and self.noise > 0:
            ok = np.flatnonzero(scores >= best * (1.0 - self.noise))
            pick = int(self.rng.choice(ok))
        else:
            pick = int(scores.argmax())
        self.last_prediction = cands[pick].pose
        return cands[pick].actions

    def _escape(
        self, lx: float, ly: float, ox: float, oy: float, c: float, s: float, far: bool = False
    ) -> tuple[float, float]:
        """One target that moves the agent away from the block (out of contact)."""
        # direction from the T's nearest point to the agent, in the block frame
        best, nx, ny = math.inf, 0.0, 1.0
        for xmin, xmax, ymin, ymax in (BAR, STEM):
            px, py = min(max(lx, xmin), xmax), min(max(ly, ymin), ymax)
            d = math.hypot(lx - px, ly - py)
            if d < best:
                best = d
                if d > 1e-9:
                    nx, ny = (lx - px) / d, (ly - py) / d
                else:  # centre inside: leave away from the T's centre
                    vx, vy = lx - 0.0, ly - 45.0
                    norm = math.hypot(vx, vy) or 1.0
                    nx, ny = vx / norm, vy / norm
        dist = 60.0 if far else 25.0
        wx, wy = to_world(lx + nx * dist, ly + ny * dist, ox, oy, c, s)
        return (min(max(wx, 0.0), 512.0), min(max(wy, 0.0), 512.0))

    def _contacts(self) -> list[tuple[float, float, float, float]]:
        """(contact-centre x, y, outward dir x, y) in the block frame."""
        r = AGENT_RADIUS
        out = []
        jit = self.noise
        for p, ex, ey, length in OUTLINE_FACES:
            mx, my = ey, -ex  # outward for a CCW outline
            k = max(1, int(round(length / self.face_spacing)))
            for j in range(k):
                t = (j + 0.5 + jit * 0.8 * (self.rng.random() - 0.5)) / k * length
                ccx, ccy = p[0] + ex * t + mx * r, p[1] + ey * t + my * r
                if dist_to_tee(ccx, ccy) >= r - 1e-6:
                    out.append((ccx, ccy, mx, my))
        for i in CONVEX_CORNERS:
            p = OUTLINE[i]
            m0, m1 = corner_normals(i)
            for lam in (0.25, 0.5, 0.75):
                lam += jit * 0.2 * (self.rng.random() - 0.5)
                w = m0 * (1 - lam) + m1 * lam
                w /= np.hypot(*w)
                out.append((p[0] + w[0] * r, p[1] + w[1] * r, float(w[0]), float(w[1])))
        return out

    def _approaches(self, st: dict[str, Any], c: float, s: float) -> list[Any]:
        """Feasible approaches: (route, u, cc, steps, agent state at the pre-contact point)."""
        ox, oy = st["bp"]
        ax, ay = st["ap"]
        lax, lay = to_local(ax, ay, ox, oy, c, s)
        hv, hr = self.hull_vis, self.hull_route
        out = []
        start_inside = hv.contains(lax, lay)
        exit_pts: list[tuple[float, float]] = []
        if start_inside:
            ex, ey = self._outward(lax, lay)
            exit_pts = [hr.exit_point(lax, lay, ex, ey)]
        for ccx, ccy, mx, my in self._contacts():
            p0 = (ccx + mx * self.gap, ccy + my * self.gap)
            if dist_to_tee(*p0) < AGENT_RADIUS + self.gap - 0.5:
                continue
            # entry: back along the push line until out of the padded outline
            q = hr.exit_point(p0[0], p0[1], mx, my) if hv.contains(*p0) else p0
            src = exit_pts[-1] if exit_pts else (lax, lay)
            if hv.segment_clear(src[0], src[1], q[0], q[1]):
                chains: list[list[tuple[float, float]]] = [[]]
            else:
                chains = hr.tangent_paths(src[0], src[1], q[0], q[1])
            best = None
            for chain in chains:
                local = [*exit_pts, *chain, q] + ([p0] if q != p0 else [])
                route = [to_world(x, y, ox, oy, c, s) for x, y in local]
                if any(not (0.0 <= x <= 512.0 and 0.0 <= y <= 512.0) for x, y in route):
                    continue
                res = self._fly(st, route, c, s)
                if res is not None and (best is None or res[0] < best[3]):
                    best = (route, (-mx, -my), (ccx, ccy), res[0], res[1])
            if best is not None:
                route, (ux, uy), (cx, cy), steps, start = best
                wu = (c * ux - s * uy, s * ux + c * uy)
                wcc = to_world(cx, cy, ox, oy, c, s)
                out.append((route, wu, wcc, steps, start))
        return out

    def _outward(self, lx: float, ly: float) -> tuple[float, float]:
        best, nx, ny = math.inf, 0.0, -1.0
        for xmin, xmax, ymin, ymax in (BAR, STEM):
            px, py = min(max(lx, xmin), xmax), min(max(ly, ymin), ymax)
            d = math.hypot(lx - px, ly - py)
            if 1e-9 < d < best:
                best, nx, ny = d, (lx - px) / d, (ly - py) / d
        return nx, ny

    def _fly(self, st: dict[str, Any], route: list[tuple[float, float]], c: float, s: float) -> Any:
        """Integrate the agent along the route (string-pulled), exactly as gym-pusht's PD step.
        Returns (steps, (pos, vel, actions)) or None if it would touch the block or not arrive."""
        ox, oy = st["bp"]
        px, py = st["ap"]
        vx, vy = st["av"]
        hv = self.hull_vis
        rl_arr = np.array([to_local(x, y, ox, oy, c, s) for x, y in route])
        last = len(route) - 1
        idx = 0
        actions: list[tuple[float, float]] = []
        fx, fy = route[last]
        min_clear = AGENT_RADIUS + 0.5
        for _ in range(self.max_route_steps):
            lpx, lpy = to_local(px, py, ox, oy, c, s)
            # furthest waypoint visible from here (string pulling)
            if idx < last:
                clear = np.flatnonzero(hv.segments_clear(lpx, lpy, rl_arr[idx + 1 :]))
                if len(clear):
                    idx += 1 + int(clear[-1])
            # the last legs (entry point -> p0) may lie inside the outline: advance by proximity
            while idx < last and math.hypot(px - route[idx][0], py - route[idx][1]) < 6.0:
                idx += 1
            if idx == last and math.hypot(px - fx, py - fy) < self.arrive_tol:
                return len(actions), ((px, py), (vx, vy), actions)
            tx, ty = route[idx]
            actions.append((tx, ty))
            for _ in range(SUBSTEPS):
                ax_ = KP * (tx - px) + KV * (0.0 - vx)
                ay_ = KP * (ty - py) + KV * (0.0 - vy)
                vx += ax_ * DT
                vy += ay_ * DT
                px += vx * DT
                py += vy * DT
                dx, dy = px - ox, py - oy
                lx, ly = c * dx + s * dy, -s * dx + c * dy
                # the T lies within 78.2 px of its local point (0, 50)
                if lx * lx + (ly - 50.0) ** 2 < (78.2 + min_clear) ** 2 and dist_to_tee(lx, ly) < min_clear:
                    return None
        return None

    def _simulate_push(
        self,
        st: dict[str, Any],
        start: Any,
        route: list[tuple[float, float]],
        u: tuple[float, float],
        cc: tuple[float, float],
        depth: float,
        steps_route: int,
    ) -> _Candidate | None:
        (px, py), (vx, vy), approach = start
        ux, uy = u
        tx, ty = cc[0] + ux * depth, cc[1] + uy * depth
        if not (0.0 <= tx <= 512.0 and 0.0 <= ty <= 512.0):
            return None
        space, agent, block = _replica(st, (px, py), (vx, vy))
        actions = list(approach)
        for _ in range(self.hold_steps):
            actions.append((tx, ty))
            _step(space, agent, (tx, ty))
        for _ in range(5):
            apx, apy = agent.position
            rx = min(max(apx - ux * 20.0, 0.0), 512.0)
            ry = min(max(apy - uy * 20.0, 0.0), 512.0)
            actions.append((rx, ry))
            _step(space, agent, (rx, ry))
            c, s = math.cos(block.angle), math.sin(block.angle)
            lx, ly = to_local(
                agent.position[0], agent.position[1], block.position[0], block.position[1], c, s
            )
            if dist_to_tee(lx, ly) > AGENT_RADIUS + 2.0:
                break
        cost = keypoint_cost(block.position[0], block.position[1], block.angle)
        pose = (float(block.position[0]), float(block.position[1]), float(block.angle))
        return _Candidate(route, u, cc, depth, actions, cost, len(actions), pose)


def _replica(
    st: dict[str, Any], agent_pos: tuple[float, float], agent_vel: tuple[float, float]
) -> tuple[pymunk.Space, pymunk.Body, pymunk.Body]:
    """A fresh pymunk space with gym-pusht's walls, agent and T (no cached contacts)."""
    space = pymunk.Space()
    space.gravity = 0, 0
    space.damping = 0.0
    space.add(
        PushTEnv.add_segment(space, (5, 506), (5, 5), 2),
        PushTEnv.add_segment(space, (5, 5), (506, 5), 2),
        PushTEnv.add_segment(space, (506, 5), (506, 506), 2),
        PushTEnv.add_segment(space, (5, 506), (506, 506), 2),
    )
    agent = PushTEnv.add_circle(space, agent_pos, 15)
    agent.velocity = agent_vel
    block, _ = PushTEnv.add_tee(space, (256, 300), 0)
    # angle first: setting it rotates the body about its centre of gravity, moving the origin
    block.angle = st["ba"]
    block.position = st["bp"]
    block.velocity = st["bv"]
    block.angular_velocity = st["bw"]
    return space, agent, block


def _step(space: pymunk.Space, agent: pymunk.Body, target: tuple[float, float]) -> None:
    """gym-pusht's control step: PD on the kinematic agent, 10 physics substeps."""
    tx, ty = target
    for _ in range(SUBSTEPS):
        px, py = agent.position
        vx, vy = agent.velocity
        agent.velocity = (
            vx + (KP * (tx - px) + KV * (0.0 - vx)) * DT,
            vy + (KP * (ty - py) + KV * (0.0 - vy)) * DT,
        )
        space.step(DT)


register_expert(
    "pusht",
    "planner",
    PushTExpert,
    description="greedy push planner (PushTExpert): plans approach, push, retract from the state",
    default=True,
)
