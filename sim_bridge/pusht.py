"""Push-T through gym-pusht: Fixed-Color and Rand-Color variants.

Observation: ``image`` uint8 (96, 96, 3) top-down view and ``agent_pos`` float32 (2,) in pixels
of the 512 x 512 workspace. Action: absolute (x, y) target of the agent, float (2,), not clipped
(as in gym-pusht). Success: coverage of the goal above gym-pusht's threshold (0.95).

Colours are changed where gym-pusht draws, not by editing pixels: ``ColoredPushTEnv`` sets the
colour of the agent, tee and wall shapes and redraws the background and goal with the episode's
colours. Its render path is pixel-identical to gym-pusht's for the default colours (tested)
but cheaper: one 24-bit surface reused, background and goal cached, no strided copy.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import cv2  # noqa: E402
import pygame  # noqa: E402
import pymunk  # noqa: E402
import pymunk.pygame_util  # noqa: E402
from gym_pusht.envs.pusht import PushTEnv  # noqa: E402
from gym_pusht.envs.pymunk_override import DrawOptions  # noqa: E402

from sim_bridge.task import Obs, Task, register_task  # noqa: E402

RGB = tuple[int, int, int]
VARIANTS = ("fixed-color", "rand-color")


@dataclass(frozen=True)
class PushTColors:
    """Colours of one episode. Defaults are gym-pusht's (the Fixed-Color variant)."""

    background: RGB = (255, 255, 255)  # white
    goal: RGB = (144, 238, 144)  # LightGreen
    tee: RGB = (119, 136, 153)  # LightSlateGray
    agent: RGB = (65, 105, 225)  # RoyalBlue
    wall: RGB = (211, 211, 211)  # LightGray

    def to_dict(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in asdict(self).items()}


FIXED_COLORS = PushTColors()


def color_distance(a: RGB, b: RGB) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64)))


def is_strongly_red(rgb: RGB, max_red_excess: float) -> bool:
    """Red channel above both others by more than ``max_red_excess``."""
    r, g, b = (int(c) for c in rgb)
    return r - max(g, b) > max_red_excess


def sample_colors(
    rng: np.random.Generator,
    min_distance: float = 100.0,
    max_red_excess: float = 60.0,
    max_tries: int = 10_000,
) -> PushTColors:
    """Random background, goal, tee and agent colours (paper, Appendix E.2).

    The background is not strongly red; goal, tee and agent are at least ``min_distance`` apart
    in RGB (Euclidean, 0-255 scale) from the background and from each other. Walls keep their
    default colour.
    """
    if not 0 <= min_distance <= 200:
        raise ValueError(f"min_distance must be in [0, 200] (RGB units), got {min_distance}")
    if max_red_excess < 0:
        raise ValueError(f"max_red_excess must be >= 0, got {max_red_excess}")

    def draw() -> RGB:
        c = rng.integers(0, 256, size=3)
        return (int(c[0]), int(c[1]), int(c[2]))

    for _ in range(max_tries):
        bg = draw()
        if not is_strongly_red(bg, max_red_excess):
            break
    else:
        raise RuntimeError("could not sample a background that is not strongly red")
    chosen = [bg]
    for _ in range(3):
        for _ in range(max_tries):
            c = draw()
            if all(color_distance(c, o) >= min_distance for o in chosen):
                chosen.append(c)
                break
        else:
            raise RuntimeError(f"could not sample distinct colours with min_distance={min_distance}")
    return PushTColors(background=bg, goal=chosen[1], tee=chosen[2], agent=chosen[3])


class ColoredPushTEnv(PushTEnv):
    """gym-pusht's PushTEnv with per-episode colours and a cheaper render path.

    Physics, reset distribution, reward and success are gym-pusht's, untouched.
    """

    def __init__(self, colors: PushTColors = FIXED_COLORS, **kwargs: Any):
        kwargs.setdefault("obs_type", "state")  # images are rendered by render_obs(), only when needed
        kwargs.setdefault("render_mode", "rgb_array")
        super().__init__(**kwargs)
        self.colors = colors
        self._screen: pygame.Surface | None = None
        self._base: pygame.Surface | None = None
        self._goal: Any = None  # (shapely goal geometry, its area), like _base made once per episode
        self._draw_options: DrawOptions | None = None

    def set_colors(self, colors: PushTColors) -> None:
        self.colors = colors
        self._base = None
        if getattr(self, "space", None) is not None:
            self._apply_shape_colors()

    def _apply_shape_colors(self) -> None:
        c = self.colors
        for shape in self.agent.shapes:
            shape.color = pygame.Color(*c.agent)
        for shape in self.block.shapes:
            shape.color = pygame.Color(*c.tee)
        for shape in self.space.shapes:
            if shape.body.body_type == pymunk.Body.STATIC:
                shape.color = pygame.Color(*c.wall)

    def _setup(self) -> None:
        super()._setup()
        self._apply_shape_colors()
        self._base = None
        self._goal = None

    def _get_coverage(self) -> float:
        """gym-pusht's coverage (same shapely geometry, same value), with the goal's geometry and
        area made once per episode (the goal never moves, as ``_base_surface`` assumes too):
        0.11 instead of 0.19 ms per step here."""
        from gym_pusht.envs.pusht import pymunk_to_shapely

        if self._goal is None:
            goal = pymunk_to_shapely(self.get_goal_pose_body(self.goal_pose), self.block.shapes)
            self._goal = (goal, goal.area)
        goal, goal_area = self._goal
        return goal.intersection(pymunk_to_shapely(self.block, self.block.shapes)).area / goal_area

    def _base_surface(self) -> pygame.Surface:
        """Background and goal: they never move within an episode."""
        if self._base is None:
            base = pygame.Surface((512, 512))
            base.fill(self.colors.background)
            goal_body = self.get_goal_pose_body(self.goal_pose)
            for shape in self.block.shapes:
                pts = [goal_body.local_to_world(v) for v in shape.get_vertices()]
                pts = [pymunk.pygame_util.to_pygame(p, base) for p in pts]
                pts += [pts[0]]
                pygame.draw.polygon(base, self.colors.goal, pts)
            self._base = base
        return self._base

    def _draw(self) -> pygame.Surface:
        if self._screen is None:
            # gym-pusht's surface format: anti-aliased contact marks blend differently in 24 bits
            self._screen = pygame.Surface((512, 512))
            if self._screen.get_masks()[:3] != (0xFF0000, 0xFF00, 0xFF):
                raise RuntimeError(f"unexpected pygame surface masks {self._screen.get_masks()}")
            self._draw_options = DrawOptions(self._screen)
        self._screen.blit(self._base_surface(), (0, 0))
        self.space.debug_draw(self._draw_options)
        return self._screen

    def _get_img(
        self, screen: pygame.Surface, width: int, height: int, render_action: bool = False
    ) -> np.ndarray:
        # The 32-bit surface is BGRX bytes, row-major: resize that buffer, then pick R, G, B.
        buf = screen.get_buffer()  # locks the surface until released
        bgrx = np.frombuffer(buf, dtype=np.uint8).reshape(512, 512, 4)  # type: ignore[call-overload]
        small = cv2.resize(bgrx, (width, height)) if (width, height) != (512, 512) else bgrx
        img = np.ascontiguousarray(small[..., 2::-1])
        del bgrx, small, buf
        if render_action and self._last_action is not None:
            # as gym-pusht marks the commanded target
            render_size = min(width, height)
            cx, cy = (np.asarray(self._last_action) / 512 * [height, width]).astype(np.int32).tolist()
            cv2.drawMarker(
                img,
                (cx, cy),
                color=(255, 0, 0),
                markerType=cv2.MARKER_CROSS,
                markerSize=int(8 / 96 * render_size),
                thickness=int(1 / 96 * render_size),
            )
        return img

    def render_obs(self) -> np.ndarray:
        return self._get_img(self._draw(), self.observation_width, self.observation_height)

    def render_frame(self, size: int = 512, mark_action: bool = False) -> np.ndarray:
        return self._get_img(self._draw(), size, size, render_action=mark_action)


class PushTTask(Task):
    """Push-T (gym-pusht 0.1.8) behind the sim_bridge Task interface.

    kwargs: ``image_size`` (observation side, 96), ``max_steps`` (300, as gym.make sets),
    ``render_size`` (video frame side, 512), ``min_color_distance`` and ``max_red_excess``
    (Rand-Color sampling, RGB units), ``success_threshold`` (coverage that counts as success;
    None keeps gym-pusht's 0.95, the CLASS paper counts IoU > 0.90 within 500 steps).
    """

    name = "pusht"
    action_dim = 2
    control_hz = 10.0
    image_keys = ("image",)
    proprio_keys = ("agent_pos",)
    progress_key = "coverage"
    action_low = np.zeros(2)
    action_high = np.full(2, 512.0)

    def __init__(
        self,
        variant: str = "fixed-color",
        image_size: int = 96,
        max_steps: int = 300,
        render_size: int = 512,
        min_color_distance: float = 100.0,
        max_red_excess: float = 60.0,
        success_threshold: float | None = None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"pusht: unknown variant {variant!r}; variants: {', '.join(VARIANTS)}")
        for key, val in (("image_size", image_size), ("max_steps", max_steps), ("render_size", render_size)):
            if not isinstance(val, int | np.integer) or val <= 0:
                raise ValueError(f"pusht: {key} must be a positive int, got {val!r}")
        self.variant = variant
        self.max_steps = int(max_steps)
        self.render_size = int(render_size)
        self.min_color_distance = float(min_color_distance)
        self.max_red_excess = float(max_red_excess)
        self.env = ColoredPushTEnv(observation_width=int(image_size), observation_height=int(image_size))
        if success_threshold is not None:
            if isinstance(success_threshold, bool) or not 0.0 < float(success_threshold) <= 1.0:
                raise ValueError(f"pusht: success_threshold must be in (0, 1], got {success_threshold!r}")
            self.env.success_threshold = float(success_threshold)  # gym-pusht's step() reads it
        # validate the colour parameters now rather than at the first reset
        if variant == "rand-color":
            sample_colors(np.random.default_rng(0), self.min_color_distance, self.max_red_excess)
        self.colors = FIXED_COLORS
        self.last_coverage = 0.0

    def _reset(self, seed: int | None) -> Obs:
        self.env.reset(seed=seed)
        if self.variant == "rand-color":
            # Own stream, so the physics reset (env.np_random) is identical across variants.
            rng = np.random.default_rng(None if seed is None else [seed, 0x5EED_C010])
            self.colors = sample_colors(rng, self.min_color_distance, self.max_red_excess)
        else:
            self.colors = FIXED_COLORS
        self.env.set_colors(self.colors)
        self.last_coverage = float(self.env._get_coverage())
        return self.observe()

    def _step(self, action: np.ndarray) -> tuple[Obs, bool, dict[str, Any]]:
        _, reward, _, _, info = self.env.step(action)
        self.last_coverage = float(info["coverage"])
        out = {"coverage": self.last_coverage, "reward": float(reward)}
        # rendering costs more than the physics step (~0.46 vs ~0.32 ms): only when it is read
        return ({} if self.skip_obs() else self.observe()), bool(info["is_success"]), out

    @property
    def success_threshold(self) -> float:
        return float(self.env.success_threshold)

    def observe(self) -> Obs:
        return {
            "image": self.env.render_obs(),
            "agent_pos": np.asarray(self.env.agent.position, dtype=np.float32),
        }

    def render(self) -> np.ndarray:
        return self.env.render_frame(self.render_size)

    def privileged_state(self) -> np.ndarray:
        """[agent_x, agent_y, block_x, block_y, block_angle mod 2 pi] as gym-pusht's ``state``."""
        return np.asarray(self.env.get_obs() if self.env.obs_type == "state" else self._state64(), np.float32)

    def _state64(self) -> np.ndarray:
        e = self.env
        return np.array([*e.agent.position, *e.block.position, e.block.angle % (2 * np.pi)], dtype=np.float64)

    def episode_info(self) -> dict[str, Any]:
        return {"colors": self.colors.to_dict()}

    def close(self) -> None:
        self.env.close()


def _factory(variant: str, **kwargs: Any) -> PushTTask:
    return PushTTask(variant, **kwargs)


register_task(
    "pusht",
    VARIANTS,
    _factory,
    description="Push-T (gym-pusht): push the T onto the goal; 96x96 image + agent_pos, 2-D absolute target",
)
