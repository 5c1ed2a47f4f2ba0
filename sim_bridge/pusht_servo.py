"""A Markovian Push-T demonstrator: a feedback pose servo recomputed from the state every step.

The planner in ``pusht_expert`` succeeds but keeps a plan (approach / push / retract), so one
state can map to different actions; a retrieval policy that copies neighbours' action chunks
then deadlocks. ``PushTServoExpert`` has no memory: each action is a function of the state
(agent xy, block xy, block angle) alone.

Every step:

1. Pose error of the block's centre of gravity and angle to the goal (256, 256, pi/4), as the
   cost ``C = |p - p_goal|^2 + rho^2 dtheta^2`` (rho^2 = 1950 px^2, the T's polar second moment
   of area per area, so C is the mean squared displacement of the T's area).
2. Candidate contacts: points every few px on the T's faces (inward normal) and fans of normals
   at its convex corners. The block has no friction and stops when released (SIM-FACTS), so a
   push of depth ``d`` at contact point r with inward normal n moves it quasi-statically by the
   impulse ``J = d / (1/m + tau^2 / I)``, ``tau = r x n``: ``dp = J n / m``, ``dtheta = J tau / I``
   (m = 1, I = 3000 as gym-pusht builds the T). C is quadratic in (dp, dtheta) so the best depth
   and the cost reduction per contact are closed-form.
3. Score = reduction / estimated steps (travel to the contact around the T + push); pushes
   that would drive the block into a wall it touches are dropped. The contact the agent already
   sits on costs no travel: that is the hysteresis, and it is a function of the state.
4. Action: if the agent is in the chosen contact's push corridor, the point ``depth`` px inside
   the contact (it pushes, sliding freely along the face to stay on the corridor line);
   otherwise the furthest visible waypoint of the route around the T's padded convex outline
   to the pre-contact point (string-pulled, recomputed every step). With ``orbit`` = 1 (the
   default) the agent only circles the block counter-clockwise (about the block frame's
   hull centre; short clockwise hops below ``backtrack`` rad allowed): routes and travel
   estimates never go back the way they came, so an action chunk never returns the agent to
   where it started without touching the block (a replayed chunk cannot loop in place).

Demonstrations differ by the random reset and by execution noise (DART): ``perturb_action``
adds Gaussian noise (5 px by default) to the executed action while the clean action is
recorded (``sim_bridge.collect`` calls it), so the stored chunks are the expert's intent from
states slightly off its own path - the states a retrieval policy drifts into. Recording the
noisy action instead would store the noise as if it were intended.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, overload

import numpy as np

from sim_bridge.pusht_expert import (
    AGENT_RADIUS,
    BAR,
    CONVEX_CORNERS,
    GOAL_POSE,
    OUTLINE,
    OUTLINE_FACES,
    STEM,
    PushTDemonstrator,
    corner_normals,
    to_local,
    to_world,
)
from sim_bridge.task import register_expert

if TYPE_CHECKING:
    from sim_bridge.pusht import PushTTask

COG_LOCAL = np.array([0.0, 45.0])  # gym-pusht's T: centre of gravity in the body frame
MASS, INERTIA = 1.0, 3000.0  # gym-pusht add_tee: mass 1, twice the bar's moment about the origin
RHO2 = 1950.0  # polar second moment of area of the T about its centroid / area (px^2)
WALL_LO, WALL_HI = 7.0, 504.0  # inner faces of gym-pusht's walls (segments at 5 / 506, radius 2)


@overload
def _wrap(a: float) -> float: ...
@overload
def _wrap(a: np.ndarray) -> np.ndarray: ...
def _wrap(a: float | np.ndarray) -> float | np.ndarray:
    """Angle(s) wrapped to [-pi, pi)."""
    return (a + np.pi) % (2 * np.pi) - np.pi


def _dist_to_tee_vec(p: np.ndarray) -> np.ndarray:
    """Distance from block-frame points (..., 2) to the T (0 inside)."""
    out = None
    for xmin, xmax, ymin, ymax in (BAR, STEM):
        dx = np.maximum(np.maximum(xmin - p[..., 0], 0.0), p[..., 0] - xmax)
        dy = np.maximum(np.maximum(ymin - p[..., 1], 0.0), p[..., 1] - ymax)
        d = np.hypot(dx, dy)
        out = d if out is None else np.minimum(out, d)
    assert out is not None
    return out


def _contact_set(spacing: float, fan: int) -> tuple[np.ndarray, np.ndarray]:
    """Block-frame contact points (K, 2) and inward unit normals (K, 2)."""
    pts, normals = [], []
    r = AGENT_RADIUS
    for p, ex, ey, length in OUTLINE_FACES:
        mx, my = ey, -ex  # outward for a CCW outline
        k = max(1, int(round(length / spacing)))
        for j in range(k):
            t = (j + 0.5) / k * length
            cx, cy = p[0] + ex * t, p[1] + ey * t
            # the agent's centre must fit: clear of the rest of the T (concave corners)
            if _dist_to_tee_vec(np.array([cx + mx * r, cy + my * r])) >= r - 1e-6:
                pts.append((cx, cy))
                normals.append((-mx, -my))
    for i in CONVEX_CORNERS:
        p = OUTLINE[i]
        m0, m1 = corner_normals(i)
        for lam in np.linspace(0.0, 1.0, fan + 2)[1:-1]:
            w = m0 * (1 - lam) + m1 * lam
            w /= np.hypot(*w)
            pts.append((p[0], p[1]))
            normals.append((-w[0], -w[1]))
    return np.array(pts, dtype=np.float64), np.array(normals, dtype=np.float64)


class PushTServoExpert(PushTDemonstrator):
    """Markovian scripted demonstrator bound to a PushTTask (policy interface: reset/select_action).

    Parameters: ``noise`` (px, std of the Gaussian perturbation of the *executed* action,
    DART; the clean action is returned and recorded; 0 disables; 5), ``finish_coverage``
    (0.97), ``max_depth`` (px pushed per step at most, 40), ``gap`` (px between agent and face
    at the pre-contact point, 3), ``clearance`` (px kept from the T when routing, 5),
    ``travel_speed`` / ``push_speed`` (px per step used to estimate steps, 8 / 8; a low travel
    speed makes the expert keep pushing where it is rather than switch contacts),
    ``fixed_steps`` (steps added to every candidate's estimate, 4), ``contact_spacing`` (px
    between contact candidates on a face, 4), ``corner_fan`` (normals per convex corner, 5),
    ``corridor`` (lateral px within which the agent counts as on a contact's push line, 8),
    ``orbit`` (1 counter-clockwise only, -1 clockwise only, 0 shortest way round; 1),
    ``backtrack`` (rad of travel against the orbit allowed, 0.35).
    """

    def __init__(
        self,
        task: PushTTask,
        seed: int | None = None,
        noise: float = 5.0,
        finish_coverage: float = 0.97,
        max_depth: float = 40.0,
        gap: float = 3.0,
        clearance: float = 5.0,
        travel_speed: float = 8.0,
        push_speed: float = 8.0,
        contact_spacing: float = 4.0,
        corner_fan: int = 5,
        corridor: float = 8.0,
        fixed_steps: float = 4.0,
        orbit: int = 1,
        backtrack: float = 0.35,
    ):
        if noise < 0:
            raise ValueError(f"PushTServoExpert: noise must be >= 0 px, got {noise}")
        if max_depth <= 0 or travel_speed <= 0 or push_speed <= 0 or contact_spacing <= 0:
            raise ValueError("PushTServoExpert: max_depth, speeds and contact_spacing must be > 0")
        super().__init__(task, seed, finish_coverage, clearance)
        self.noise = float(noise)
        self.max_depth = float(max_depth)
        self.gap = float(gap)
        self.travel_speed = float(travel_speed)
        self.push_speed = float(push_speed)
        self.corridor = float(corridor)
        self.fixed_steps = float(fixed_steps)
        if orbit not in (-1, 0, 1):
            raise ValueError(f"PushTServoExpert: orbit must be -1, 0 or 1, got {orbit}")
        self.orbit = int(orbit)
        self.backtrack = float(backtrack)
        self.P, self.N = _contact_set(float(contact_spacing), int(corner_fan))
        r = AGENT_RADIUS
        self.CC = self.P - self.N * r  # agent centre touching the contact (block frame)
        self.P0 = self.CC - self.N * self.gap  # pre-contact point
        # circle approximating the padded hull, for the travel estimate
        self._hc = np.array([0.0, 55.0])
        self._hr = float(np.max(np.hypot(*(self.hull_vis.v - self._hc).T))) * 0.92
        self.last_choice: int | None = None

    # --- policy interface ---------------------------------------------------------------------
    def reset(self) -> None:
        self.last_choice = None

    def select_action(self, obs: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The clean action for the current simulator state (obs is ignored)."""
        env = self.task.env
        a, b = env.agent, env.block
        state = (
            float(a.position[0]),
            float(a.position[1]),
            float(b.position[0]),
            float(b.position[1]),
            float(b.angle),
        )
        if self.done:
            return np.array(state[:2], dtype=np.float64)
        return self.action(state)

    def perturb_action(self, action: np.ndarray) -> np.ndarray:
        """The action to execute: ``action`` plus N(0, noise^2) px (DART); the caller records
        the clean ``action``."""
        if self.noise <= 0:
            return np.asarray(action, dtype=np.float64)
        return np.clip(np.asarray(action, dtype=np.float64) + self.rng.normal(0.0, self.noise, 2), 0.0, 512.0)

    # --- the servo ----------------------------------------------------------------------------
    def action(self, state: tuple[float, float, float, float, float] | np.ndarray) -> np.ndarray:
        """Clean action for state (agent x, y, block origin x, y, angle): a pure function."""
        ax, ay, ox, oy, th = (float(v) for v in state)
        c, s = math.cos(th), math.sin(th)
        R = np.array([[c, -s], [s, c]])
        gx, gy, gth = GOAL_POSE
        cg, sg = math.cos(gth), math.sin(gth)
        com = np.array([ox, oy]) + R @ COG_LOCAL
        com_goal = np.array([gx - sg * COG_LOCAL[1], gy + cg * COG_LOCAL[1]])
        e_p = com_goal - com
        e_th = float(_wrap(gth - th))
        la = np.array(to_local(ax, ay, ox, oy, c, s))
        rho2 = RHO2

        # quasi-static push model for every contact (world frame)
        n = self.N @ R.T
        r = (self.P - COG_LOCAL) @ R.T
        tau = r[:, 0] * n[:, 1] - r[:, 1] * n[:, 0]
        g = 1.0 / (1.0 / MASS + tau * tau / INERTIA)
        lin = (e_p @ n.T) + rho2 * e_th * tau / INERTIA
        a_ = g * lin / MASS
        b_ = g * g * (1.0 / MASS**2 + rho2 * tau * tau / INERTIA**2)
        depth = np.clip(a_ / b_, 0.0, self.max_depth)
        red = 2 * a_ * depth - b_ * depth * depth

        # walls: drop pushes that move a wall-touching vertex of the T into its wall
        verts = np.array([ox, oy]) + OUTLINE @ R.T
        near = (verts < WALL_LO + 2.0) | (verts > WALL_HI - 2.0)
        if near.any():
            rel = verts - com  # (V, 2)
            dp = (g / MASS)[:, None] * n  # (K, 2) per unit push
            dth = g * tau / INERTIA  # (K,)
            vx = dp[:, 0:1] - dth[:, None] * rel[None, :, 1]
            vy = dp[:, 1:2] + dth[:, None] * rel[None, :, 0]
            into = np.zeros(len(n), dtype=bool)
            for axis, v in ((0, vx), (1, vy)):
                lo = near[:, axis] & (verts[:, axis] < 256)
                hi = near[:, axis] & (verts[:, axis] > 256)
                into |= ((v < -1e-3) & lo[None, :]).any(axis=1) | ((v > 1e-3) & hi[None, :]).any(axis=1)
            red = np.where(into, 0.0, red)

        # travel estimate from the agent to each contact (block frame)
        d_cc = la - self.CC
        lat = np.abs(d_cc[:, 0] * self.N[:, 1] - d_cc[:, 1] * self.N[:, 0])
        out = -(d_cc[:, 0] * self.N[:, 0] + d_cc[:, 1] * self.N[:, 1])  # px outward from touching
        in_corr = (lat < self.corridor) & (out > -6.0) & (out < self.gap + 6.0)
        travel = self._travel(la)
        travel = np.where(in_corr, np.hypot(*d_cc.T), travel)
        steps = self.fixed_steps + travel / self.travel_speed + depth / self.push_speed
        score = np.where(red > 1e-9, red / steps, -np.inf)
        k = int(np.argmax(score))
        self.last_choice = k
        if not np.isfinite(score[k]):  # nothing helps: hold
            return np.array([ax, ay])

        if in_corr[k]:
            tgt_local = self.CC[k] + self.N[k] * depth[k]
        else:
            tgt_local = self._route_target(la, self.P0[k], -self.N[k], (ox, oy, c, s))
        wx, wy = to_world(float(tgt_local[0]), float(tgt_local[1]), ox, oy, c, s)
        return np.array([min(max(wx, 0.0), 512.0), min(max(wy, 0.0), 512.0)])

    def _segments_clear(self, a: np.ndarray, b: np.ndarray, skip: float = 4.0) -> np.ndarray:
        """For segments a -> b[k] (block frame), whether the agent's disc stays off the T
        (samples every ~4 px, ignoring the first ``skip`` px where the agent may touch)."""
        b = np.atleast_2d(b)
        d = b - a
        length = np.hypot(*d.T)
        m = 24
        t = np.linspace(0.0, 1.0, m)[None, :]
        pts = a[None, None, :] + t[..., None] * d[:, None, :]  # (K, m, 2)
        dist = _dist_to_tee_vec(pts)
        ok = (dist >= AGENT_RADIUS + 0.5) | (t * length[:, None] < skip)
        return ok.all(axis=1)

    def _travel(self, la: np.ndarray) -> np.ndarray:
        """Estimated path length from the agent to every pre-contact point (block frame)."""
        direct = np.hypot(*(self.P0 - la).T)
        clear = self._segments_clear(la, self.P0)
        # around a circle of radius R about the hull centre
        R = self._hr
        va, vq = la - self._hc, self.P0 - self._hc
        da = max(float(np.hypot(*va)), R + 1e-3)
        dq = np.maximum(np.hypot(*vq.T), R + 1e-3)
        signed = _wrap(np.arctan2(vq[:, 1], vq[:, 0]) - math.atan2(va[1], va[0]))
        if self.orbit == 0:
            dphi = np.abs(signed)
        else:  # one-way: the agent only circles the block in the orbit's sense
            dphi = (self.orbit * signed) % (2 * np.pi)
            clear = clear & ((dphi < np.pi) | (dphi > 2 * np.pi - self.backtrack))
        arc = dphi - math.acos(R / da) - np.arccos(R / dq)
        around = math.sqrt(da * da - R * R) + np.sqrt(dq * dq - R * R) + R * np.maximum(arc, 0.0)
        return np.where(clear, direct, np.maximum(around, direct))

    def _sense_ok(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether going from a to b (block frame) keeps to the orbit's sense about the hull centre."""
        if self.orbit == 0:
            return True
        va, vb = a - self._hc, b - self._hc
        d = (self.orbit * float(_wrap(math.atan2(vb[1], vb[0]) - math.atan2(va[1], va[0])))) % (2 * math.pi)
        return d < math.pi or d > 2 * math.pi - self.backtrack

    def _route_target(
        self, la: np.ndarray, p0: np.ndarray, out_dir: np.ndarray, pose: tuple[float, float, float, float]
    ) -> np.ndarray:
        """Furthest visible waypoint of the shortest route around the padded hull to ``p0``
        (block frame), entered along ``-out_dir``."""
        if self._segments_clear(la, p0[None, :])[0] and self._sense_ok(la, p0):
            return p0
        hv, hr = self.hull_vis, self.hull_route
        lax, lay = float(la[0]), float(la[1])
        pre: list[tuple[float, float]] = []
        src = (lax, lay)
        if hr.contains(lax, lay):
            # leave along the outward normal of the nearest face first
            best, nx, ny = math.inf, 0.0, -1.0
            for xmin, xmax, ymin, ymax in (BAR, STEM):
                px, py = min(max(lax, xmin), xmax), min(max(lay, ymin), ymax)
                d = math.hypot(lax - px, lay - py)
                if 1e-9 < d < best:
                    best, nx, ny = d, (lax - px) / d, (lay - py) / d
            src = hr.exit_point(lax, lay, nx, ny)
            pre = [src]
        mx, my = out_dir
        q = (
            hr.exit_point(float(p0[0]), float(p0[1]), float(mx), float(my))
            if hr.contains(*p0)
            else (p0[0], p0[1])
        )
        if hv.segment_clear(src[0], src[1], q[0], q[1]):
            chains: list[list[tuple[float, float]]] = [[]]
        else:
            chains = hr.tangent_paths(src[0], src[1], q[0], q[1]) or [[]]
        ox, oy, c, s = pose
        best_route, best_len = None, math.inf
        for chain in chains:
            route = np.array([*pre, *chain, q, (p0[0], p0[1])], dtype=np.float64)
            pts = np.vstack([la, route])
            length = float(np.hypot(*np.diff(pts, axis=0).T).sum())
            world = np.array([to_world(x, y, ox, oy, c, s) for x, y in route])
            outside = float(np.clip(-world, 0, None).sum() + np.clip(world - 512.0, 0, None).sum())
            length += 10.0 * outside
            if self.orbit != 0:  # the chain that turns the orbit's way
                ang = np.arctan2(pts[:, 1] - self._hc[1], pts[:, 0] - self._hc[0])
                turn = float(_wrap(np.diff(ang)).sum())
                length += 0.0 if self.orbit * turn >= 0 else 1e6
            if length < best_len:
                best_route, best_len = route, length
        assert best_route is not None
        vis = self._segments_clear(la, best_route)
        idx = np.flatnonzero(vis)
        return best_route[int(idx[-1])] if len(idx) else best_route[0]


register_expert(
    "pusht",
    "servo",
    PushTServoExpert,
    description="Markovian pose servo (PushTServoExpert): the action is a function of the state",
)
