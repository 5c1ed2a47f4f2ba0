"""Aloha bimanual transfer-cube (gym-aloha 0.1.5 models and task logic) with a rotating top view.

Action (D = 14): gym-aloha's absolute joint targets [left arm 6, left gripper 1 (0 closed .. 1 open),
right arm 6, right gripper 1]. Observations: ``image`` (top camera, uint8 HWC) and ``joint_pos``
(the same 14 quantities measured). Success: gym-aloha's reward reaches 4 (the left gripper holds
the cube off the table).

Variants: ``fixed-view`` (the top camera as shipped) and ``rot-view`` (CLASS Appendix E.1: the
image is rotated by a per-episode angle U[0, 360) degrees that changes by +0.5 or -0.5 degrees per
step, the sign drawn per episode).

We drive dm_control directly instead of through `gym.make("gym_aloha/AlohaTransferCube-v0")`:
the gym wrapper renders three 640x480 cameras every step and cannot be seeded reproducibly.

The scripted demonstrator follows ACT's transfer waypoints, but reaches them by inverse kinematics
on the joint model itself (the mocap "end effector" model ACT plans in holds the grippers at a
pose-dependent offset under MuJoCo 3.x, so its joint trajectories miss the cube).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from sim_bridge.camera_motion import RotatingView
from sim_bridge.task import Obs, Task, register_expert, register_task

VARIANTS = ("fixed-view", "rot-view")
DEFAULT_MAX_STEPS = 400  # ACT's episode length at 50 Hz; the paper evaluates up to 600


def _aloha_modules() -> tuple[Any, Any, Any, Any]:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dm_control import mujoco as dm_mujoco
    from dm_control.rl import control
    from gym_aloha import constants
    from gym_aloha.tasks import sim

    return dm_mujoco, control, constants, sim


def _make_joint_env(box_pose_ref: list[np.ndarray]) -> Any:
    dm_mujoco, control, constants, sim = _aloha_modules()

    class _TransferCube(sim.TransferCubeTask):  # type: ignore[name-defined]
        def initialize_episode(self, physics: Any) -> None:
            sim.BOX_POSE[0] = box_pose_ref[0]  # gym-aloha reads the cube pose from this global
            super().initialize_episode(physics)

        def get_observation(self, physics: Any) -> dict[str, Any]:  # no rendering here
            return {"qpos": self.get_qpos(physics)}

    physics = dm_mujoco.Physics.from_xml_path(str(constants.ASSETS_DIR / "bimanual_viperx_transfer_cube.xml"))
    return control.Environment(
        physics, _TransferCube(), float("inf"), control_timestep=constants.DT, flat_observation=False
    )


class AlohaTransferTask(Task):
    """Aloha transfer-cube. Options: image_size (84), render (True), max_steps (400), camera ("top")."""

    name = "aloha-transfer"
    action_dim = 14
    control_hz = 50.0
    proprio_keys = ("joint_pos",)

    def __init__(
        self,
        variant: str = "fixed-view",
        image_size: int = 84,
        render: bool = True,
        max_steps: int = DEFAULT_MAX_STEPS,
        camera: str = "top",
        rotation_rate_deg: float = 0.5,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"aloha-transfer: unknown variant {variant!r}; expected one of {VARIANTS}")
        if image_size < 8:
            raise ValueError(f"aloha-transfer: image_size must be >= 8, got {image_size}")
        if max_steps < 1:
            raise ValueError(f"aloha-transfer: max_steps must be >= 1, got {max_steps}")
        self.variant = variant
        self.image_size = int(image_size)
        self.render_images = bool(render)
        self.max_steps = int(max_steps)
        self.camera = camera
        self.image_keys = ("image",) if render else ()
        self.view = RotatingView(rotation_rate_deg, moving=variant == "rot-view")
        self._box_pose = [np.array([0.1, 0.5, 0.05, 1.0, 0.0, 0.0, 0.0])]
        self.env = _make_joint_env(self._box_pose)
        self.physics = self.env.physics
        import mujoco

        self._mujoco = mujoco
        if mujoco.mj_name2id(self.physics.model.ptr, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"aloha-transfer: no camera named {camera!r}")
        self._renderer: Any = None
        self._last_qpos = np.zeros(14)
        self._reward = 0

    # ---- helpers ---------------------------------------------------------------------------
    def _render_raw(self) -> np.ndarray:
        mj = self._mujoco
        if self._renderer is None:
            self._renderer = mj.Renderer(self.physics.model.ptr, self.image_size, self.image_size)
        r = self._renderer
        r.update_scene(self.physics.data.ptr, camera=self.camera)
        r.scene.flags[mj.mjtRndFlag.mjRND_SHADOW] = 0
        r.scene.flags[mj.mjtRndFlag.mjRND_REFLECTION] = 0
        return np.asarray(r.render(), dtype=np.uint8)

    def observe(self) -> Obs:
        obs: Obs = {"joint_pos": np.asarray(self._last_qpos, dtype=np.float32)}
        if self.render_images:
            img = self._render_raw()
            obs["image"] = self.view.apply(img) if self.variant == "rot-view" else img
        return obs

    def box_pose(self) -> np.ndarray:
        """Cube position (3) and MuJoCo (w, x, y, z) quaternion (4), world frame."""
        return np.asarray(self.physics.data.qpos[16:23], dtype=np.float64).copy()

    def privileged_state(self) -> np.ndarray:
        """Cube position (3) + xyzw quaternion (4)."""
        p = self.box_pose()
        return np.r_[p[:3], p[4:7], p[3]].astype(np.float32)

    def success(self) -> bool:
        return self._reward == 4

    # ---- Task interface --------------------------------------------------------------------
    def _reset(self, seed: int | None) -> Obs:
        box_ss, view_ss = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(box_ss)
        # gym-aloha's sample_box_pose ranges: x U[0, 0.2], y U[0.4, 0.6], z 0.05
        xyz = rng.uniform([0.0, 0.4, 0.05], [0.2, 0.6, 0.05])
        self._box_pose[0] = np.r_[xyz, 1.0, 0.0, 0.0, 0.0]
        ts = self.env.reset()
        self._last_qpos = np.asarray(ts.observation["qpos"], dtype=np.float64)
        self._reward = 0
        self.view.reset(np.random.default_rng(view_ss))
        return self.observe()

    def _step(self, action: np.ndarray) -> tuple[Obs, bool, dict[str, Any]]:
        ts = self.env.step(action)
        self._last_qpos = np.asarray(ts.observation["qpos"], dtype=np.float64)
        self._reward = int(ts.reward or 0)
        self.view.step()
        info: dict[str, Any] = {"reward": self._reward}
        if self.variant == "rot-view":
            info["view_angle"] = self.view.angle
        return self.observe(), self.success(), info

    def render(self) -> np.ndarray:
        img = self._render_raw()
        return self.view.apply(img) if self.variant == "rot-view" else img

    def episode_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"box_pose": self._box_pose[0].tolist()}
        if self.variant == "rot-view":
            info["view_start_deg"] = self.view.angle
            info["view_direction"] = self.view.direction
        return info

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


# ---- scripted demonstrator ------------------------------------------------------------------
# Point midway between the finger pads, in each arm's gripper_link frame (measured on the finger
# meshes: the pads span x 0.064 .. 0.154 and meet at y = 0 when closed).
GRASP_POINT = np.array([0.125, 0.0, 0.0])
_ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
_OPEN, _CLOSED = 1.0, 0.0  # gym-aloha's normalised gripper action


def _pick_rotation(pitch_deg: float) -> np.ndarray:
    """Right gripper_link orientation for picking: approach axis (x) along -x tilted down by
    `pitch_deg`, fingers closing along world y."""
    p = np.deg2rad(pitch_deg)
    x = np.array([-np.cos(p), 0.0, -np.sin(p)])
    y = np.array([0.0, -1.0, 0.0])
    return np.column_stack([x, y, np.cross(x, y)])


# Left gripper at the handover: approaching along +x, fingers closing vertically (ACT's pose).
_LEFT_MEET_ROT = np.column_stack([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector (world frame) taking `current` to `target`."""
    from scipy.spatial.transform import Rotation

    return np.asarray(Rotation.from_matrix(target @ current.T).as_rotvec())


class _ArmIK:
    """Damped least-squares inverse kinematics of one arm's grasp point on a scratch MjData."""

    def __init__(self, model: Any, side: str) -> None:
        import mujoco

        self.mj = mujoco
        self.model = model
        self.body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"vx300s_{side}/gripper_link")
        joint = mujoco.mjtObj.mjOBJ_JOINT
        jids = [mujoco.mj_name2id(model, joint, f"vx300s_{side}/{j}") for j in _ARM_JOINTS]
        self.qadr = np.array([model.jnt_qposadr[j] for j in jids])
        self.dadr = np.array([model.jnt_dofadr[j] for j in jids])
        self.lo = np.array([model.jnt_range[j][0] for j in jids])
        self.hi = np.array([model.jnt_range[j][1] for j in jids])
        self.jacp = np.zeros((3, model.nv))
        self.jacr = np.zeros((3, model.nv))

    def pose(self, data: Any) -> tuple[np.ndarray, np.ndarray]:
        """Grasp-point position and gripper_link rotation for the kinematics in `data`."""
        rot = data.xmat[self.body].reshape(3, 3).copy()
        return data.xpos[self.body] + rot @ GRASP_POINT, rot

    def solve(
        self, data: Any, q0: np.ndarray, pos: np.ndarray, rot: np.ndarray, iters: int = 10
    ) -> np.ndarray:
        """Joint angles (6) that put the grasp point at `pos` with orientation `rot`, from `q0`."""
        mj, m = self.mj, self.model
        q = np.clip(q0.astype(np.float64), self.lo, self.hi)
        w_rot = 0.3  # metres per radian: position matters most
        for _ in range(iters):
            data.qpos[self.qadr] = q
            mj.mj_kinematics(m, data)
            mj.mj_comPos(m, data)
            cur_pos, cur_rot = self.pose(data)
            err = np.r_[pos - cur_pos, w_rot * _rotation_error(rot, cur_rot)]
            if np.linalg.norm(err) < 1e-4:
                break
            mj.mj_jac(m, data, self.jacp, self.jacr, cur_pos, self.body)
            jac = np.vstack([self.jacp[:, self.dadr], w_rot * self.jacr[:, self.dadr]])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(6), err)
            q = np.clip(q + np.clip(dq, -0.2, 0.2), self.lo, self.hi)
        return q


Waypoint = tuple[float, Any, np.ndarray, float]  # (step, position or state -> position, rotation, gripper)


class _Track:
    """Time-indexed waypoints for one arm. A waypoint position may be a function of the task,
    evaluated once, when the segment that ends at it begins (closed loop on the cube pose)."""

    def __init__(self, waypoints: list[Waypoint]) -> None:
        self.wps = waypoints
        self.cache: dict[int, np.ndarray] = {}

    def _pos(self, i: int, task: AlohaTransferTask) -> np.ndarray:
        if i not in self.cache:
            p = self.wps[i][1]
            self.cache[i] = np.asarray(p(task) if callable(p) else p, dtype=np.float64)
        return self.cache[i]

    def at(self, t: float, task: AlohaTransferTask) -> tuple[np.ndarray, np.ndarray, float]:
        from scipy.spatial.transform import Rotation, Slerp

        for i in range(len(self.wps) - 1):
            t0, _, r0, g0 = self.wps[i]
            t1, _, r1, g1 = self.wps[i + 1]
            if t <= t1:
                f = float(np.clip((t - t0) / max(t1 - t0, 1e-9), 0.0, 1.0))
                f = f * f * (3 - 2 * f)  # smoothstep: no velocity jumps at waypoints
                p0, p1 = self._pos(i, task), self._pos(i + 1, task)
                rot = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([r0, r1])))(f).as_matrix()
                return p0 + f * (p1 - p0), rot, g0 + f * (g1 - g0)
        _, _, r, g = self.wps[-1]
        return self._pos(len(self.wps) - 1, task), r, g


class AlohaTransferExpert:
    """Scripted transfer by inverse kinematics on the task's own joint model.

    Both grippers follow time-indexed waypoints (after ACT's transfer script): the right arm goes
    above the cube, descends, closes, lifts to a meeting point; the left arm waits beside it,
    moves in around the cube's actual position, closes; the right opens and backs off, the left
    pulls the cube away. Each step the waypoint pose is turned into joint targets by damped least
    squares on the gripper's grasp point, warm-started from the previous solution; an integral term
    removes the position actuators' steady-state (gravity) error. Per-episode randomness: meeting
    point, grasp offsets, approach height, pick pitch, timing.

    `reset()` after `task.reset(...)`; the plan is made at the first `select_action`.
    """

    def __init__(self, task: AlohaTransferTask, seed: int | None = None, noise: bool = True) -> None:
        import mujoco

        self.task = task
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        model = task.physics.model.ptr
        self._scratch = mujoco.MjData(model)
        self.arms = {side: _ArmIK(model, side) for side in ("left", "right")}
        self.tracks: dict[str, _Track] = {}
        self.q = {side: np.zeros(6) for side in self.arms}
        self.bias = {side: np.zeros(3) for side in self.arms}
        self._t = 0
        self._end = 0.0
        self._planned = False

    def reset(self) -> None:
        self._planned = False
        self._t = 0

    def reseed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi)) if self.noise else 0.5 * (lo + hi)

    def _measured(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        return self.arms[side].pose(self.task.physics.data.ptr)

    def plan(self) -> None:
        task = self.task
        data = task.physics.data.ptr
        for side, arm in self.arms.items():
            self.q[side] = data.qpos[arm.qadr].copy()
            self.bias[side] = np.zeros(3)
        s = self.u(0.9, 1.0) * task.max_steps / 400  # timing scale (ACT's 400-step script)
        box = task.box_pose()[:3]
        # the cube is dropped from z = 0.05 at reset: plan the grasp for it resting (centre 0.02)
        grasp_off = np.array([self.u(-0.004, 0.006), self.u(-0.004, 0.004), self.u(0.004, 0.01)])
        grasp = np.r_[box[:2], 0.02] + grasp_off
        above = grasp + [0.0, 0.0, self.u(0.07, 0.11)]
        pick = _pick_rotation(60.0 + self.u(-5.0, 5.0))
        meet = np.array([self.u(-0.02, 0.02), 0.5 + self.u(-0.02, 0.02), 0.25 + self.u(-0.015, 0.015)])
        depth = self.u(0.008, 0.016)  # how far the left grasp point reaches past the cube's -x face

        def cube_then(offset: np.ndarray) -> Any:
            return lambda tk: tk.box_pose()[:3] + offset

        r0, rr0 = self._measured("right")
        l0, lr0 = self._measured("left")
        g0 = float(task._last_qpos[6])
        right: list[Waypoint] = [
            (0, r0, rr0, g0),
            (90 * s, above, pick, _OPEN),
            (130 * s, grasp, pick, _OPEN),
            (165 * s, grasp, pick, _CLOSED),
            (200 * s, meet + [0.05, 0.0, 0.03], pick, _CLOSED),
            (220 * s, meet, pick, _CLOSED),
            (300 * s, meet, pick, _CLOSED),
            (320 * s, meet, pick, _OPEN),
            (360 * s, meet + [0.1, 0.0, 0.02], pick, _OPEN),
        ]
        stand_off = np.array([-0.02 - 0.1, 0.0, 0.0])
        left: list[Waypoint] = [
            (0, l0, lr0, g0),
            (100 * s, meet + stand_off, _LEFT_MEET_ROT, _OPEN),
            (225 * s, meet + stand_off, _LEFT_MEET_ROT, _OPEN),
            # read at step 225, once the right arm holds the cube still: aim at its measured pose
            (265 * s, cube_then(np.array([-0.02 + depth, 0.0, 0.0])), _LEFT_MEET_ROT, _OPEN),
            (295 * s, lambda tk: self.tracks["left"]._pos(3, tk), _LEFT_MEET_ROT, _CLOSED),
            (360 * s, lambda tk: self.tracks["left"]._pos(3, tk) + [-0.1, 0.0, 0.0], _LEFT_MEET_ROT, _CLOSED),
        ]
        self.tracks = {"left": _Track(left), "right": _Track(right)}
        self._end = 360 * s
        self._planned = True

    def select_action(self, obs: Any = None) -> np.ndarray:
        if not self._planned:
            self.plan()
        t = self._t
        self._t += 1
        out = []
        for side in ("left", "right"):
            pos, rot, grip = self.tracks[side].at(t, self.task)
            meas, _ = self._measured(side)
            # integral on the measured grasp point; frozen while the gripper moves fast or
            # pushes on something (large error)
            err = pos - meas
            if np.linalg.norm(err) < 0.02:
                self.bias[side] = np.clip(self.bias[side] + 0.1 * err, -0.02, 0.02)
            arm = self.arms[side]
            self._scratch.qpos[:] = self.task.physics.data.qpos
            self.q[side] = arm.solve(self._scratch, self.q[side], pos + self.bias[side], rot)
            out.append(np.r_[self.q[side], grip])
        return np.concatenate(out).astype(np.float32)

    @property
    def done(self) -> bool:
        return self._planned and self._t >= self._end


register_task(
    "aloha-transfer",
    VARIANTS,
    lambda variant, **kw: AlohaTransferTask(variant, **kw),
    description="Aloha transfer-cube (gym-aloha): top image + 14 joint positions; 14-D joint action",
)
register_expert(
    "aloha-transfer",
    "scripted",
    AlohaTransferExpert,
    description="inverse-kinematics transfer script after ACT's (AlohaTransferExpert)",
)
