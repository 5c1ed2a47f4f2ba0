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

The scripted demonstrator follows ACT's recipe: plan end-effector waypoints from the cube pose,
execute them in gym-aloha's mocap ("end effector") model, record the joint trajectory, and replay
it as joint actions in the task's joint-controlled model.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from sim_bridge.camera_motion import RotatingView
from sim_bridge.task import Obs, PolicyLike, Task, register_task

VARIANTS = ("fixed-view", "rot-view")
DEFAULT_MAX_STEPS = 400  # ACT's episode length at 50 Hz; the paper evaluates up to 600


def _aloha_modules() -> tuple[Any, Any, Any, Any, Any]:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dm_control import mujoco as dm_mujoco
    from dm_control.rl import control
    from gym_aloha import constants
    from gym_aloha.tasks import sim, sim_end_effector

    return dm_mujoco, control, constants, sim, sim_end_effector


def _make_joint_env(box_pose_ref: list[np.ndarray]) -> Any:
    dm_mujoco, control, constants, sim, _ = _aloha_modules()

    class _TransferCube(sim.TransferCubeTask):  # type: ignore[misc, name-defined]
        def initialize_episode(self, physics: Any) -> None:
            sim.BOX_POSE[0] = box_pose_ref[0]  # gym-aloha reads the cube pose from this global
            super().initialize_episode(physics)

        def get_observation(self, physics: Any) -> dict[str, Any]:  # no rendering here
            return {"qpos": self.get_qpos(physics)}

    physics = dm_mujoco.Physics.from_xml_path(str(constants.ASSETS_DIR / "bimanual_viperx_transfer_cube.xml"))
    return control.Environment(
        physics, _TransferCube(), float("inf"), control_timestep=constants.DT, flat_observation=False
    )


def _make_ee_env(box_pose_ref: list[np.ndarray]) -> Any:
    dm_mujoco, control, constants, _, sim_ee = _aloha_modules()

    class _TransferCubeEE(sim_ee.TransferCubeEndEffectorTask):  # type: ignore[misc, name-defined]
        def initialize_episode(self, physics: Any) -> None:
            self.initialize_robots(physics)
            i = physics.model.name2id("red_box_joint", "joint")
            start = physics.model.jnt_qposadr[i]
            np.copyto(physics.data.qpos[start : start + 7], box_pose_ref[0])
            sim_ee.base.Task.initialize_episode(self, physics)

        def get_observation(self, physics: Any) -> dict[str, Any]:
            return {"qpos": self.get_qpos(physics), "gripper_ctrl": physics.data.ctrl.copy()}

    xml = constants.ASSETS_DIR / "bimanual_viperx_end_effector_transfer_cube.xml"
    physics = dm_mujoco.Physics.from_xml_path(str(xml))
    return control.Environment(
        physics, _TransferCubeEE(), float("inf"), control_timestep=constants.DT, flat_observation=False
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

    def make_expert(self, seed: int | None = None, **kwargs: Any) -> PolicyLike:
        return AlohaTransferExpert(self, seed=seed, **kwargs)

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
def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (w, x, y, z) quaternions."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def _axis_quat(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    h = np.deg2rad(degrees) / 2
    return np.r_[np.cos(h), np.sin(h) * np.asarray(axis, dtype=np.float64)]


def _interpolate(waypoints: list[dict[str, Any]], t: float) -> tuple[np.ndarray, np.ndarray, float]:
    for a, b in zip(waypoints[:-1], waypoints[1:], strict=True):
        if a["t"] <= t <= b["t"]:
            f = (t - a["t"]) / max(b["t"] - a["t"], 1e-9)
            xyz = a["xyz"] + f * (b["xyz"] - a["xyz"])
            q = a["quat"] + f * (b["quat"] - a["quat"])
            return xyz, q / np.linalg.norm(q), float(a["gripper"] + f * (b["gripper"] - a["gripper"]))
    last = waypoints[-1]
    return last["xyz"], last["quat"], float(last["gripper"])


# Centre between the finger pads in each arm's mocap frame (measured in the gym-aloha model).
TIP_OFFSET = {"left": np.array([0.0928, 0.0, 0.0114]), "right": np.array([-0.0928, 0.0, 0.0114])}


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def transfer_waypoints(
    box_xyz: np.ndarray, rng: np.random.Generator | None, episode_len: int = 400
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Mocap waypoints for both arms, after ACT's pick-and-transfer script but placed by fingertip
    position (ACT's numbers assume another mocap-gripper offset than this MuJoCo gives).

    `box_xyz` is the cube centre at rest. With `rng`, the meeting point, approach height, grasp
    point and timing are perturbed."""

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi)) if rng is not None else 0.5 * (lo + hi)

    init_left = np.array([-0.31718881, 0.5, 0.29525084])
    init_right = np.array([0.31718881, 0.49999888, 0.29525084])
    ident = np.array([1.0, 0.0, 0.0, 0.0])
    pick_quat = _quat_mul(ident, _axis_quat((0.0, 1.0, 0.0), -60.0 + u(-5, 5)))
    meet_left_quat = _axis_quat((1.0, 0.0, 0.0), 90.0)
    meet = np.array([u(-0.02, 0.02), 0.5 + u(-0.02, 0.02), 0.25 + u(-0.015, 0.015)])
    s = episode_len / 400.0 * u(0.92, 1.0)  # overall timing scale
    grasp = np.asarray(box_xyz, dtype=np.float64) + [u(-0.004, 0.004), u(-0.004, 0.004), u(0.0, 0.006)]
    above = grasp + [0.0, 0.0, u(0.06, 0.1)]

    def wp(
        t: float, side: str, tip: np.ndarray | None, quat: np.ndarray, g: float, xyz: Any = None
    ) -> dict[str, Any]:
        quat = np.asarray(quat, dtype=np.float64)
        if tip is not None:
            xyz = np.asarray(tip) - _quat_to_mat(quat) @ TIP_OFFSET[side]
        return {"t": t * s, "xyz": np.asarray(xyz, dtype=np.float64), "quat": quat, "gripper": g}

    lq = meet_left_quat
    left = [
        wp(0, "left", None, ident, 0, xyz=init_left),
        wp(100, "left", meet + [-0.12, 0, 0], lq, 1),
        wp(260, "left", meet + [-0.012, 0, 0], lq, 1),
        wp(310, "left", meet + [-0.012, 0, 0], lq, 0),
        wp(360, "left", meet + [-0.12, 0, 0], lq, 0),
        wp(400, "left", meet + [-0.12, 0, 0], lq, 0),
    ]
    right = [
        wp(0, "right", None, ident, 0, xyz=init_right),
        wp(90, "right", above, pick_quat, 1),
        wp(130, "right", grasp, pick_quat, 1),
        wp(170, "right", grasp, pick_quat, 0),
        wp(200, "right", meet + [0.05, 0, 0], pick_quat, 0),
        wp(220, "right", meet, pick_quat, 0),
        wp(310, "right", meet, pick_quat, 1),
        wp(360, "right", meet + [0.1, 0, 0], pick_quat, 1),
        wp(400, "right", meet + [0.2, 0, 0], pick_quat, 1),
    ]
    return left, right


class AlohaTransferExpert:
    """Scripted transfer: plans in the mocap model, replays joints in the task's model.

    `reset()` after `task.reset(...)`; the plan is made at the first `select_action`. The replayed
    trajectory has `task.max_steps` actions (the last one repeated)."""

    def __init__(self, task: AlohaTransferTask, seed: int | None = None, noise: bool = True) -> None:
        self.task = task
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self._ee_env: Any = None
        self._ee_box = [np.zeros(7)]
        self._plan: np.ndarray | None = None
        self._t = 0

    def reset(self) -> None:
        self._plan = None
        self._t = 0

    def reseed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def plan(self, box_pose: np.ndarray, n_steps: int) -> np.ndarray:
        """Joint actions (n_steps, 14) that transfer a cube at `box_pose` (pos 3 + wxyz 4)."""
        _, _, constants, _, _ = _aloha_modules()
        self._ee_box[0] = np.asarray(box_pose, dtype=np.float64)
        if self._ee_env is None:
            self._ee_env = _make_ee_env(self._ee_box)  # its reset reads the cube pose from _ee_box
        env = self._ee_env
        ts = env.reset()
        left, right = transfer_waypoints(box_pose[:3], self.rng if self.noise else None)
        traj = [np.asarray(ts.observation["qpos"], dtype=np.float64)]
        for t in range(n_steps - 1):
            lx, lq, lg = _interpolate(left, t)
            rx, rq, rg = _interpolate(right, t)
            ts = env.step(np.concatenate([lx, lq, [lg], rx, rq, [rg]]))
            q = np.asarray(ts.observation["qpos"], dtype=np.float64).copy()
            ctrl = ts.observation["gripper_ctrl"]
            # replay the commanded gripper positions, not the measured ones (as ACT does)
            q[6] = constants.normalize_puppet_gripper_position(ctrl[0])
            q[13] = constants.normalize_puppet_gripper_position(ctrl[2])
            traj.append(q)
        return np.stack(traj)

    def select_action(self, obs: Any = None) -> np.ndarray:
        if self._plan is None:
            box = self.task.box_pose()
            box[2] = 0.02  # the cube (half size 0.02) is dropped from z = 0.05: plan for it at rest
            self._plan = self.plan(box, self.task.max_steps)
        a = self._plan[min(self._t, len(self._plan) - 1)]
        self._t += 1
        return a.astype(np.float32)

    @property
    def done(self) -> bool:
        return self._plan is not None and self._t >= len(self._plan)


register_task(
    "aloha-transfer",
    VARIANTS,
    lambda variant, **kw: AlohaTransferTask(variant, **kw),
    description="Aloha transfer-cube (gym-aloha): top image + 14 joint positions; 14-D joint action",
)
