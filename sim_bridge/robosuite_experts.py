"""Scripted demonstrators for the robosuite tasks, driven by privileged simulator state.

Each expert is a small phase machine: every phase names a target grip-site pose (position + yaw
about world z, gripper pointing down) computed from the current object poses, and a gripper
command. The commanded pose moves towards the target at a capped speed (so the 10-D absolute
actions form smooth trajectories, like teleoperated ones), and a phase ends once the commanded pose
has arrived and the measured pose is within tolerance, or once its own object-state test passes; a
phase may time out and move on or retry an earlier phase, so no episode stalls in one. Variation
between demonstrations comes from per-episode random parameters (speeds, heights, grasp offsets,
pauses) and a small smooth (Ornstein-Uhlenbeck) perturbation of the commanded position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from class_core.geometry import matrix_to_rot6d
from sim_bridge.robosuite_tasks import GRIPPER_CLOSED, GRIPPER_OPEN, RobosuiteTask
from sim_bridge.task import register_expert

# Grip site pointing down with yaw 0; its x axis (the finger closing axis) is world +y.
_R_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def down_rotation(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return np.asarray(rz @ _R_DOWN)


def yaw_of(mat: np.ndarray) -> float:
    """Yaw of a body's x axis about world z."""
    return float(np.arctan2(mat[1, 0], mat[0, 0]))


def closest_equivalent(angle: float, period: float, reference: float = 0.0) -> float:
    """angle + k * period closest to `reference`."""
    return float(reference + (angle - reference + period / 2) % period - period / 2)


def _gripper_yaw(rot: np.ndarray) -> float:
    """Inverse of down_rotation for the yaw part: site x axis = (-sin yaw, cos yaw, 0)."""
    x = rot[:, 0]
    return float(np.arctan2(-x[0], x[1]))


@dataclass
class Phase:
    name: str
    target: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, float]]  # state -> (pos, yaw)
    gripper: float
    tol: float = 0.01  # metres between measured and target position to finish the phase
    hold: int = 0  # extra steps to stay once arrived (e.g. to close the gripper)
    speed_scale: float = 1.0
    track: bool = False  # re-evaluate the target every step (closed loop on object poses)
    # finish test on object state instead of the grip-site tolerance (e.g. "nut over the peg")
    until: Callable[[dict[str, np.ndarray]], bool] | None = None
    timeout: int = 0  # steps after which the phase gives up (0: never)
    on_timeout: str = ""  # phase to go back to on timeout (a retry); "" moves on to the next phase
    retries: int = 2  # how often `on_timeout` may send the machine back
    then: str = ""  # phase to go to once finished ("" the next one, "end" the demonstration is over)


class ScriptedExpert:
    """Base class: subclasses define `plan(state, rng) -> list[Phase]`."""

    task_name = ""

    def __init__(self, noise: bool = True) -> None:
        self.noise = noise
        self.phases: list[Phase] = []
        self.idx = 0
        self.hold_left = 0
        self.cmd_pos = np.zeros(3)
        self.cmd_yaw = 0.0
        self.ou = np.zeros(3)
        self.speed = 0.012
        self.yaw_speed = 0.08
        self.ou_sigma = 0.0
        self.rng = np.random.default_rng(0)
        self.frozen: tuple[np.ndarray, float] | None = None
        self.bias = np.zeros(3)
        self.phase_steps = 0
        self.retries_left: dict[int, int] = {}

    # cap on the integral correction: it winds up while a finger rests on an object
    bias_clip = 0.03

    def plan(self, task: RobosuiteTask, state: dict[str, np.ndarray]) -> list[Phase]:
        raise NotImplementedError

    def u(self, lo: float, hi: float) -> float:
        """A per-episode random parameter (the midpoint when noise is off)."""
        return float(self.rng.uniform(lo, hi)) if self.noise else 0.5 * (lo + hi)

    def reset(self, task: RobosuiteTask, rng: np.random.Generator) -> None:
        if task.name != self.task_name:
            raise ValueError(f"{type(self).__name__} drives {self.task_name!r}, got task {task.name!r}")
        self.rng = rng
        pos, rot = task.ee_pose()
        self.cmd_pos = pos.copy()
        self.cmd_yaw = _gripper_yaw(rot)
        self.speed = self.u(0.008, 0.014)
        self.yaw_speed = self.u(0.05, 0.1)
        self.ou_sigma = 0.0015 if self.noise else 0.0
        self.ou = np.zeros(3)
        self.phases = self.plan(task, task.object_state())
        self.idx = 0
        self.hold_left = -1
        self.frozen = None
        self.bias = np.zeros(3)
        self.phase_steps = 0
        self.retries_left = {i: ph.retries for i, ph in enumerate(self.phases)}

    def _index(self, name: str, default: int) -> int:
        if not name:
            return default
        if name == "end":
            return len(self.phases)
        return next(i for i, p in enumerate(self.phases) if p.name == name)

    def _goto(self, idx: int) -> None:
        self.idx = idx
        self.hold_left = -1
        self.frozen = None
        self.phase_steps = 0

    @property
    def done(self) -> bool:
        return self.idx >= len(self.phases)

    def act(self, task: RobosuiteTask) -> np.ndarray:
        """Next 10-D action (pos, rot6d, gripper) for the task's current state."""
        if self.done:
            ph = self.phases[-1]
        else:
            ph = self.phases[self.idx]
        state = task.object_state()
        if self.frozen is None or ph.track:
            self.frozen = ph.target(state)
        tgt_pos, tgt_yaw = self.frozen
        tgt_yaw = closest_equivalent(tgt_yaw, 2 * np.pi, self.cmd_yaw)
        # move the commanded pose towards the target at capped speed
        delta = tgt_pos - self.cmd_pos
        dist = float(np.linalg.norm(delta))
        step = self.speed * ph.speed_scale
        self.cmd_pos = tgt_pos.copy() if dist <= step else self.cmd_pos + delta * (step / dist)
        dyaw = tgt_yaw - self.cmd_yaw
        ys = self.yaw_speed
        self.cmd_yaw = tgt_yaw if abs(dyaw) <= ys else self.cmd_yaw + np.sign(dyaw) * ys
        # smooth perturbation, fading out while the gripper is near its target
        self.ou += -0.2 * self.ou + self.ou_sigma * self.rng.standard_normal(3) * np.sqrt(0.4)
        arrived = dist <= step and abs(dyaw) <= self.yaw_speed
        meas, _ = task.ee_pose()
        if arrived:
            # the OSC controller has no integral term: remove its steady-state error once settled
            self.bias = np.clip(self.bias + 0.15 * (tgt_pos - meas), -self.bias_clip, self.bias_clip)
        pos_out = self.cmd_pos + self.bias + (0.0 if arrived else 1.0) * self.ou
        if not self.done:
            self.phase_steps += 1
            if ph.until is not None:  # object-state test: the commanded pose need not have arrived
                finished = ph.until(state)
            else:
                finished = arrived and bool(np.linalg.norm(meas - tgt_pos) <= ph.tol)
            if finished:
                if self.hold_left < 0:
                    self.hold_left = ph.hold
                if self.hold_left == 0:
                    self._goto(self._index(ph.then, self.idx + 1))
                else:
                    self.hold_left -= 1
            elif ph.timeout and self.phase_steps >= ph.timeout:
                if ph.on_timeout and self.retries_left[self.idx] > 0:
                    self.retries_left[self.idx] -= 1
                    self._goto(self._index(ph.on_timeout, self.idx + 1))
                else:  # moving on beats stalling for the rest of the episode
                    self._goto(self._index(ph.then, self.idx + 1))
        rot = down_rotation(self.cmd_yaw)
        return np.concatenate([pos_out, matrix_to_rot6d(rot), [ph.gripper]]).astype(np.float32)


class _Latch:
    """Evaluates `fn(state)` once, when first asked (objects are still settling at reset)."""

    def __init__(self, fn: Callable[[dict[str, np.ndarray]], Any]) -> None:
        self.fn = fn
        self.value: Any = None

    def __call__(self, s: dict[str, np.ndarray]) -> Any:
        if self.value is None:
            self.value = self.fn(s)
        return self.value


def _grasp_yaw(obj_mat: np.ndarray, period: float, offset: float = 0.0) -> float:
    return closest_equivalent(yaw_of(obj_mat) + offset, period, 0.0)


class LiftExpert(ScriptedExpert):
    task_name = "lift"

    def plan(self, task: RobosuiteTask, state: dict[str, np.ndarray]) -> list[Phase]:
        above = self.u(0.06, 0.12)
        dz = self.u(-0.012, 0.0)
        dxy = np.array([self.u(-0.006, 0.006), self.u(-0.006, 0.006), 0.0])
        lift = self.u(0.12, 0.2)
        hold = int(round(self.u(4, 10)))
        dyaw = self.u(-0.1, 0.1)
        cube = _Latch(lambda s: (s["cube_pos"] + dxy, _grasp_yaw(s["cube_mat"], np.pi / 2) + dyaw))

        def at(h: float) -> Callable[[dict[str, np.ndarray]], tuple[np.ndarray, float]]:
            return lambda s: (cube(s)[0] + [0, 0, h], cube(s)[1])

        def above_fresh(s: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
            cube.value = None  # re-read until the approach is over
            return at(above)(s)

        return [
            Phase("above", above_fresh, GRIPPER_OPEN, tol=0.02, track=True),
            Phase("descend", at(dz), GRIPPER_OPEN, tol=0.01, speed_scale=0.6),
            Phase("close", at(dz), GRIPPER_CLOSED, tol=0.02, hold=hold),
            Phase("lift", at(lift), GRIPPER_CLOSED, tol=0.02),
        ]


class StackExpert(ScriptedExpert):
    task_name = "stack"

    def plan(self, task: RobosuiteTask, state: dict[str, np.ndarray]) -> list[Phase]:
        above = self.u(0.06, 0.12)
        dz = self.u(-0.01, 0.0)
        dxy = np.array([self.u(-0.005, 0.005), self.u(-0.005, 0.005), 0.0])
        carry = self.u(0.08, 0.14)
        hold = int(round(self.u(4, 10)))
        dyaw = self.u(-0.1, 0.1)
        cube = _Latch(lambda s: (s["cubeA_pos"] + dxy, _grasp_yaw(s["cubeA_mat"], np.pi / 2) + dyaw))

        def at(h: float) -> Callable[[dict[str, np.ndarray]], tuple[np.ndarray, float]]:
            return lambda s: (cube(s)[0] + [0, 0, h], cube(s)[1])

        def above_fresh(s: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
            cube.value = None  # re-read until the approach is over
            return at(above)(s)

        # cubeA is 0.02 half-size, cubeB 0.025: centres 0.045 apart when stacked
        drop = self.u(0.048, 0.056)

        def over_b(height: float) -> Callable[[dict[str, np.ndarray]], tuple[np.ndarray, float]]:
            def f(s: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
                # closed loop: move the gripper so that cubeA (not the gripper) ends over cubeB
                grip, _ = task.ee_pose()
                off = grip - s["cubeA_pos"]
                goal = s["cubeB_pos"] + [0, 0, height]
                return goal + off, cube(s)[1]

            return f

        return [
            Phase("above", above_fresh, GRIPPER_OPEN, tol=0.02, track=True),
            Phase("descend", at(dz), GRIPPER_OPEN, tol=0.01, speed_scale=0.6),
            Phase("close", at(dz), GRIPPER_CLOSED, tol=0.02, hold=hold),
            Phase("lift", at(carry), GRIPPER_CLOSED, tol=0.02),
            Phase("carry", over_b(carry), GRIPPER_CLOSED, tol=0.02),
            Phase("align", over_b(drop + 0.02), GRIPPER_CLOSED, tol=0.006, speed_scale=0.5, track=True),
            Phase("lower", over_b(drop), GRIPPER_CLOSED, tol=0.006, speed_scale=0.4, track=True),
            Phase("release", lambda s: (task.ee_pose()[0], cube(s)[1]), GRIPPER_OPEN, tol=0.05, hold=6),
            Phase("retreat", lambda s: (s["cubeA_pos"] + [0, 0, 0.1], cube(s)[1]), GRIPPER_OPEN, tol=0.02),
        ]


# Square nut (robosuite square-nut.xml): the ring's outer edge is 0.044 from the nut centre along
# its x axis, the handle reaches out to 0.079; the hole (half-width 0.0228) clears the peg
# (half-width 0.016) by 6.8 mm per side. Success: nut centre within 0.03 of the peg in x and y,
# below table + 0.05, and the grip site more than about 0.042 from the nut centre.
_HANDLE_GRASP = 0.058  # along the handle: the fingers clear the ring, and the nut's lever stays short
_PEG_HALF_HEIGHT = 0.1


def _placing_yaw(nut_yaw: float) -> float:
    """The axis-aligned nut yaw closest to `nut_yaw` whose handle (nut x axis) does not point
    along world +x (away from the robot base)."""
    options = [k * np.pi / 2 for k in range(-2, 3) if np.cos(k * np.pi / 2) < 0.5]
    return min(options, key=lambda t: abs(closest_equivalent(t - nut_yaw, 2 * np.pi)))


class SquareExpert(ScriptedExpert):
    task_name = "square"
    bias_clip = 0.015

    def plan(self, task: RobosuiteTask, state: dict[str, np.ndarray]) -> list[Phase]:
        above = self.u(0.06, 0.1)
        hold = int(round(self.u(5, 10)))
        # fingers close across the handle: closing axis along the nut's local y
        dyaw = self.u(-0.08, 0.08)
        along = _HANDLE_GRASP + self.u(-0.004, 0.004)
        dz = self.u(-0.001, 0.003)
        # the nut is still settling at reset: targets read the state when their phase starts
        grasp_pose: list[tuple[np.ndarray, float]] = []

        def grasp_at(s: dict[str, np.ndarray], height: float, latch: bool = True) -> tuple[np.ndarray, float]:
            if latch and grasp_pose:
                pos, yaw = grasp_pose[0]
                return pos + [0, 0, height], yaw
            pose = (
                s["nut_pos"] + along * s["nut_mat"][:, 0] + [0, 0, dz],
                _grasp_yaw(s["nut_mat"], np.pi) + dyaw,
            )
            if latch:
                grasp_pose.append(pose)
            return pose[0] + [0, 0, height], pose[1]

        def reopen(s: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
            grasp_pose.clear()  # a failed grasp is retried from the nut's new pose
            pos, rot = task.ee_pose()
            return pos + [0, 0, 0.03], _gripper_yaw(rot)

        peg = state["peg_pos"]
        peg_top = peg[2] + _PEG_HALF_HEIGHT
        carry_z = peg_top + self.u(0.05, 0.07)  # nut centre heights from here on
        align_z = peg_top + self.u(0.018, 0.025)
        table_z = float(task.table_top[2])

        def nut_goal(z: float) -> Callable[[dict[str, np.ndarray]], tuple[np.ndarray, float]]:
            def f(s: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
                grip, rot = task.ee_pose()
                # rotate the held nut so its square hole lines up with the (axis-aligned) peg, with
                # the handle not pointing away from the robot: a stretched arm sags and the nut
                # hits the peg top
                nut_yaw = yaw_of(s["nut_mat"])
                g_yaw = _gripper_yaw(rot) + _placing_yaw(nut_yaw) - nut_yaw
                # place the nut, not the gripper: the grasp offset is read from the actual poses
                off = grip - s["nut_pos"]
                goal = np.array([s["peg_pos"][0], s["peg_pos"][1], z])
                return goal + off, g_yaw

            return f

        def xy_err(s: dict[str, np.ndarray]) -> float:
            return float(np.linalg.norm(s["nut_pos"][:2] - s["peg_pos"][:2]))

        def held(s: dict[str, np.ndarray]) -> bool:
            grip, _ = task.ee_pose()
            lifted = s["nut_pos"][2] > table_z + 0.05
            return bool(lifted and abs(grip[2] - carry_z) < 0.03 and task.gripper_width() > 0.01)

        def over_peg(s: dict[str, np.ndarray]) -> bool:
            return xy_err(s) < 0.003 and abs(s["nut_pos"][2] - align_z) < 0.012

        def inserted(s: dict[str, np.ndarray]) -> bool:
            return xy_err(s) < 0.02 and bool(s["nut_pos"][2] < table_z + 0.04)

        return [
            Phase("above", lambda s: grasp_at(s, above, latch=False), GRIPPER_OPEN, tol=0.02, track=True),
            Phase(
                "descend", lambda s: grasp_at(s, 0.0), GRIPPER_OPEN, tol=0.006, speed_scale=0.5, timeout=40
            ),
            Phase("close", lambda s: grasp_at(s, 0.0), GRIPPER_CLOSED, tol=0.02, hold=hold, timeout=30),
            Phase(
                "lift",
                lambda s: (np.r_[grasp_at(s, 0)[0][:2], carry_z], grasp_at(s, 0)[1]),
                GRIPPER_CLOSED,
                until=held,
                timeout=50,
                on_timeout="reopen",
            ),
            # the nut pivots about the finger axis: slower, with a pause so it stops swinging
            Phase("carry", nut_goal(carry_z), GRIPPER_CLOSED, tol=0.02, hold=4, speed_scale=0.7, timeout=80),
            Phase(
                "align",
                nut_goal(align_z),
                GRIPPER_CLOSED,
                speed_scale=0.4,
                track=True,
                until=over_peg,
                timeout=60,
            ),
            Phase(
                "insert",
                nut_goal(table_z + 0.015),
                GRIPPER_CLOSED,
                speed_scale=0.5,
                track=True,
                until=inserted,
                timeout=50,
                on_timeout="align",  # stuck on the peg top: lift a little, re-centre, try again
            ),
            Phase(
                "release",
                lambda s: (task.ee_pose()[0], _gripper_yaw(task.ee_pose()[1])),
                GRIPPER_OPEN,
                tol=0.05,
                hold=5,
            ),
            Phase(
                "retreat",
                lambda s: (task.ee_pose()[0] + [0, 0, 0.12], _gripper_yaw(task.ee_pose()[1])),
                GRIPPER_OPEN,
                tol=0.03,
                then="end",
            ),
            # only reached through `lift`'s timeout (the nut was not picked up); the rest of the
            # episode is a second attempt
            Phase("reopen", reopen, GRIPPER_OPEN, tol=0.03, hold=3, timeout=20, then="above"),
        ]


EXPERTS: dict[str, type[ScriptedExpert]] = {"lift": LiftExpert, "stack": StackExpert, "square": SquareExpert}


def make_expert(task_name: str, noise: bool = True) -> ScriptedExpert:
    try:
        return EXPERTS[task_name](noise=noise)
    except KeyError:
        raise ValueError(f"no scripted expert for {task_name!r}; have {sorted(EXPERTS)}") from None


class BoundExpert:
    """A scripted expert bound to a task, with the policy interface rollouts use:
    `reset()` after `task.reset(...)`, then `select_action(obs)` (obs is ignored: the expert reads
    the simulator). Each episode draws its random parameters from the expert's own generator."""

    def __init__(self, task: RobosuiteTask, seed: int | None = None, noise: bool = True) -> None:
        self.task = task
        self.expert = make_expert(task.name, noise=noise)
        self.rng = np.random.default_rng(seed)
        self._fresh = True

    def reset(self) -> None:
        self._fresh = True

    def reseed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    @property
    def done(self) -> bool:
        return not self._fresh and self.expert.done

    def select_action(self, obs: Any = None) -> np.ndarray:
        if self._fresh:  # plan from the state of the episode that has just been reset
            self.expert.reset(self.task, self.rng)
            self._fresh = False
        return self.expert.act(self.task)


for _name, _cls in EXPERTS.items():
    register_expert(_name, "scripted", BoundExpert, description=f"phase-machine script ({_cls.__name__})")


def run_expert_episode(
    task: RobosuiteTask,
    seed: int,
    expert: ScriptedExpert | None = None,
    settle_steps: int = 5,
) -> tuple[dict[str, np.ndarray], bool, dict[str, Any]]:
    """Roll out one scripted demonstration. Returns (episode arrays keyed by canonical names plus
    `action`, success, info). The episode stops once the task has succeeded for `settle_steps` + 1
    consecutive steps, or at `task.max_steps`. Observations at step t are paired with the action
    taken at t."""
    expert = expert or make_expert(task.name)
    obs = task.reset(seed)
    expert.reset(task, np.random.default_rng([seed, 7919]))  # decorrelated from the scene seed
    frames: dict[str, list[np.ndarray]] = {k: [] for k in obs}
    actions: list[np.ndarray] = []
    success_at, held = -1, 0
    for t in range(task.max_steps):
        a = expert.act(task)
        for k, v in obs.items():
            frames[k].append(v)
        actions.append(a)
        obs, success, _ = task.step(a)
        if success and success_at < 0:
            success_at = t
        # a success that lasts (e.g. Square's test flickers while the gripper lets go of the nut)
        held = held + 1 if success else 0
        if held > settle_steps:
            break
    episode = {k: np.stack(v) for k, v in frames.items()}
    episode["action"] = np.stack(actions).astype(np.float32)
    ok = success_at >= 0 and task.success()
    return episode, ok, {"steps": len(actions), "success_step": success_at, "phase": expert.idx}
