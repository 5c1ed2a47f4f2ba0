"""robosuite tasks (Lift, Stack, Square) with a Panda and absolute end-effector pose actions.

Action (D = 10, world frame): target position (3) + target orientation as rot6d (6) + gripper (1,
-1 open .. +1 closed). The rot6d part is converted to the axis-angle input of robosuite's OSC_POSE
controller in absolute mode (`input_type="absolute"`, `input_ref_frame="world"`), so the action is
the pose the grip site should reach, the same frame as the `ee_pos` / `ee_rot6d` observations.

Camera variants (CLASS Appendix E.1):
- ``fixed-cam``: robosuite's `agentview` camera as shipped.
- ``dyn-cam``: the camera starts at a random pose on a sphere of radius 1 around a fixed look-at
  target and orbits `arc_step` radians per control step along a random tangent direction.
- ``rand-cam``: a random pose from the same distribution, static for the episode.
The moved camera is robosuite's `agentview` camera (a world-body camera): writing its model pose
renders exactly what a camera on a mocap body would, without touching the physics.

Images are rendered with our own `mujoco.Renderer` (shadows and reflections off); they come out
upright, unlike robosuite's own camera observations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from class_core.geometry import matrix_to_axis_angle, matrix_to_quat, matrix_to_rot6d, rot6d_to_matrix
from sim_bridge.camera_motion import OrbitCamera, OrbitConfig
from sim_bridge.task import Obs, Task, register_task

ENV_NAMES = {"lift": "Lift", "stack": "Stack", "square": "NutAssemblySquare"}
# Paper Table 10 uses 400 (Square) / 600 (Three-Stack); our scripted demos need < 250 steps.
DEFAULT_MAX_STEPS = {"lift": 300, "stack": 400, "square": 400}
VARIANTS = ("fixed-cam", "dyn-cam", "rand-cam")
GRIPPER_OPEN, GRIPPER_CLOSED = -1.0, 1.0


def _quiet_robosuite() -> None:
    import logging

    os.environ.setdefault("MUJOCO_GL", "egl")
    for name in ("robosuite", "robosuite_logs"):
        logging.getLogger(name).setLevel(logging.ERROR)


@dataclass
class RobosuiteTaskConfig:
    image_size: int = 84
    wrist_image: bool = False
    render: bool = True  # False: no images at all (fast scripted collection of states / tests)
    camera: str = "agentview"
    max_steps: int | None = None
    control_hz: int = 20
    # Look-at target relative to the table-top centre (world z up).
    look_at_offset: tuple[float, float, float] = (0.0, 0.0, 0.1)
    orbit: OrbitConfig = field(default_factory=OrbitConfig)
    # Camera poses lower than the look-at target would see the underside of the table: rejected.
    # Set allow_below_target=True to sample the paper's full polar range.
    allow_below_target: bool = False


class RobosuiteTask(Task):
    """One robosuite environment, created once and reset per episode (hard_reset=False).

    Options (keyword arguments, see RobosuiteTaskConfig): image_size, wrist_image, render, camera,
    max_steps, control_hz, look_at_offset, orbit (OrbitConfig or dict), allow_below_target.
    """

    action_dim = 10
    proprio_keys: tuple[str, ...] = ("ee_pos", "ee_rot6d", "gripper")

    def __init__(self, name: str, variant: str = "fixed-cam", **kwargs: Any) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(
                f"robosuite task {name!r}: unknown variant {variant!r}; expected one of {VARIANTS}"
            )
        if name not in ENV_NAMES:
            raise ValueError(f"unknown robosuite task {name!r}; expected one of {sorted(ENV_NAMES)}")
        cfg = RobosuiteTaskConfig()
        for key, value in kwargs.items():
            if not hasattr(cfg, key):
                raise TypeError(
                    f"RobosuiteTask({name!r}): unknown option {key!r}; valid: {sorted(vars(cfg))}"
                )
            if key == "orbit" and isinstance(value, dict):
                fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
                value = OrbitConfig(**fields)
            setattr(cfg, key, value)
        if cfg.image_size < 8:
            raise ValueError(f"RobosuiteTask: image_size must be >= 8, got {cfg.image_size}")
        self.name = name
        self.variant = variant
        self.cfg = cfg
        self.control_hz = cfg.control_hz
        self.max_steps = cfg.max_steps or DEFAULT_MAX_STEPS[name]
        self.image_keys: tuple[str, ...] = ()
        if cfg.render:
            self.image_keys = ("image", "wrist_image") if cfg.wrist_image else ("image",)

        _quiet_robosuite()
        import robosuite as suite
        from robosuite.controllers import load_composite_controller_config

        ctrl = load_composite_controller_config(controller="BASIC", robot="Panda")
        ctrl["body_parts"]["right"].update(input_type="absolute", input_ref_frame="world")
        self.env = suite.make(
            ENV_NAMES[name],
            robots="Panda",
            controller_configs=ctrl,
            has_renderer=False,
            has_offscreen_renderer=False,
            use_camera_obs=False,
            ignore_done=True,
            hard_reset=False,  # keep one MjModel so the renderer and camera ids stay valid
            control_freq=cfg.control_hz,
            horizon=10**9,
            seed=0,
        )
        self.env.reset()
        sim = self.env.sim
        self.model = sim.model._model
        self.data = sim.data._data
        self.robot = self.env.robots[0]
        self._eef_site = self.robot.eef_site_id["right"]
        self._finger_qpos = list(self.robot._ref_gripper_joint_pos_indexes["right"])
        import mujoco

        self._mujoco = mujoco
        self._cam_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, cfg.camera)
        if self._cam_id < 0:
            raise ValueError(f"RobosuiteTask: no camera named {cfg.camera!r} in {ENV_NAMES[name]}")
        if self.model.cam_bodyid[self._cam_id] != 0 and self.variant != "fixed-cam":
            raise ValueError(f"camera {cfg.camera!r} is attached to a moving body; cannot orbit it")
        self._cam_pos0 = self.model.cam_pos[self._cam_id].copy()
        self._cam_quat0 = self.model.cam_quat[self._cam_id].copy()
        table = np.asarray(self.env.table_offset, dtype=np.float64)
        self.table_top = table
        target = table + np.asarray(cfg.look_at_offset)
        orbit = cfg.orbit
        if not cfg.allow_below_target and (orbit.min_height is None or orbit.min_height < target[2]):
            from dataclasses import replace

            orbit = replace(orbit, min_height=float(target[2]))
        self.orbit = OrbitCamera(target, orbit, moving=self.variant == "dyn-cam")
        self._renderer: Any = None
        self._rng = np.random.default_rng(0)
        self._cam_start = self.orbit.position.copy()

    # ---- rendering -------------------------------------------------------------------------
    def _render(self, camera: str | int) -> np.ndarray:
        if self._renderer is None:
            mj = self._mujoco
            s = self.cfg.image_size
            self._renderer = mj.Renderer(self.model, s, s)
            self._scene_option = mj.MjvOption()
        r = self._renderer
        r.update_scene(self.data, camera=camera, scene_option=self._scene_option)
        r.scene.flags[self._mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        r.scene.flags[self._mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        return np.asarray(r.render(), dtype=np.uint8)

    def _apply_camera(self) -> None:
        if self.variant == "fixed-cam":
            return
        self.model.cam_pos[self._cam_id] = self.orbit.position
        self.model.cam_quat[self._cam_id] = self.orbit.quat_wxyz()
        # camera world poses are derived quantities: refresh them without touching the dynamics
        self._mujoco.mj_camlight(self.model, self.data)

    # ---- state -----------------------------------------------------------------------------
    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Grip-site position (3,) and rotation matrix (3, 3) in the world frame."""
        d, i = self.data, self._eef_site
        return d.site_xpos[i].copy(), d.site_xmat[i].reshape(3, 3).copy()

    def gripper_width(self) -> float:
        q = self.data.qpos[self._finger_qpos]
        return float(q[0] - q[1])

    def joint_positions(self) -> np.ndarray:
        """The arm's joint angles (rad), base to wrist (the sim bridge's /joint_states)."""
        return self.data.qpos[self.robot._ref_joint_pos_indexes].copy()

    def privileged_state(self) -> np.ndarray:
        """Object poses flattened: per object (in `object_state` order) position (3) + xyzw quat (4)."""
        st = self.object_state()
        keys = [k[:-4] for k in st if k.endswith("_mat")]
        parts = [np.r_[st[k + "_pos"], matrix_to_quat(st[k + "_mat"])] for k in keys]
        return np.concatenate(parts).astype(np.float32)

    def object_state(self) -> dict[str, np.ndarray]:
        """Object poses for scripted demonstrators: positions (3,) and rotation matrices (3, 3)."""
        d = self.data
        env = self.env
        out: dict[str, np.ndarray] = {}

        def body(key: str, bid: int) -> None:
            out[f"{key}_pos"] = d.xpos[bid].copy()
            out[f"{key}_mat"] = d.xmat[bid].reshape(3, 3).copy()

        if self.name == "lift":
            body("cube", env.cube_body_id)
        elif self.name == "stack":
            body("cubeA", env.cubeA_body_id)
            body("cubeB", env.cubeB_body_id)
        else:
            nut = env.nuts[0]
            body("nut", env.obj_body_id[nut.name])
            mj = self._mujoco
            sid = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_SITE, nut.important_sites["handle"])
            out["handle_pos"] = d.site_xpos[sid].copy()
            body("peg", env.peg1_body_id)
        return out

    def observe(self) -> Obs:
        pos, mat = self.ee_pose()
        obs: dict[str, np.ndarray] = {
            "ee_pos": pos.astype(np.float32),
            "ee_rot6d": matrix_to_rot6d(mat).astype(np.float32),
            "gripper": np.array([self.gripper_width()], dtype=np.float32),
        }
        if self.cfg.render:
            obs["image"] = self._render(self._cam_id)
            if self.cfg.wrist_image:
                obs["wrist_image"] = self._render("robot0_eye_in_hand")
        return obs

    def current_action(self, gripper: float = GRIPPER_OPEN) -> np.ndarray:
        """The 10-D action that holds the current end-effector pose."""
        pos, mat = self.ee_pose()
        return np.concatenate([pos, matrix_to_rot6d(mat), [gripper]]).astype(np.float32)

    # ---- Task interface --------------------------------------------------------------------
    def _reset(self, seed: int | None) -> Obs:
        ss = np.random.SeedSequence(seed)
        env_seed, cam_seed = ss.spawn(2)
        # the placement samplers hold a reference to env.rng: reseed it in place
        self.env.rng.bit_generator.state = np.random.default_rng(env_seed).bit_generator.state
        self.env.reset()
        self._rng = np.random.default_rng(cam_seed)
        if self.variant != "fixed-cam":
            self.orbit.reset(self._rng)
        self._cam_start = self.orbit.position.copy()
        self._apply_camera()
        return self.observe()

    def _step(self, a: np.ndarray) -> tuple[Obs, bool, dict[str, Any]]:
        rotvec = matrix_to_axis_angle(rot6d_to_matrix(a[3:9]))
        grip = float(np.clip(a[9], -1.0, 1.0))
        self.env.step(np.concatenate([a[:3], rotvec, [grip]]))
        self.orbit.step()
        self._apply_camera()
        info: dict[str, Any] = {}
        if self.variant != "fixed-cam":
            info["camera_pos"] = self.orbit.position.copy()
        return self.observe(), self.success(), info

    def success(self) -> bool:
        return bool(self.env._check_success())

    def render(self) -> np.ndarray:
        return self._render(self._cam_id)

    def episode_info(self) -> dict[str, Any]:
        if self.variant == "fixed-cam":
            return {}
        return {
            "camera_start": self._cam_start.tolist(),
            "look_at": self.orbit.target.tolist(),
            "orbit_axis": self.orbit.axis.tolist(),
        }

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.env.close()

    def __repr__(self) -> str:
        return f"RobosuiteTask({self.name!r}, {self.variant!r}, image_size={self.cfg.image_size})"


_DESCRIPTIONS = {
    "lift": "robosuite Lift (Panda): lift the cube",
    "stack": "robosuite Stack (Panda): put the red cube on the green one",
    "square": "robosuite NutAssemblySquare (Panda): put the square nut on its peg",
}

for _name in ENV_NAMES:
    register_task(
        _name,
        VARIANTS,
        lambda variant, _n=_name, **kw: RobosuiteTask(_n, variant, **kw),
        description=_DESCRIPTIONS[_name] + "; image + ee_pos/ee_rot6d/gripper; 10-D absolute ee pose action",
    )
