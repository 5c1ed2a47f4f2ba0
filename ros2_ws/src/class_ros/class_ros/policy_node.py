"""policy_node: observations in, /class/policy/action_chunk and /diagnostics out.

A wiring diagram over class_core.deploy.PolicyCore: parameters -> PolicyCoreConfig, every
subscribed message -> core.on_message, a timer -> core.tick, whatever the core returns is
published. Parameters (config/ros/policy.yaml):
  mode (nonparametric | mlp | diffusion), model (name under models_dir, or a path), models_dir,
  device, control_hz, n_action_steps (0 = the artifact's T_a), obs_keys ([] = the artifact's),
  action_names, max_obs_age (s), sync_tolerance (s, 0 = half a period), diagnostics_period (s),
  obs_sources (YAML string: canonical name -> {topic, kind, names, index}), obs_qos
  (reliable | sensor_data).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rclpy.node import Node

from class_core.deploy import PolicyCore, PolicyCoreConfig
from class_ros.common import RELIABLE, SENSOR, Publishers, declare, run_node, yaml_param
from class_ros.msg_factory import msg_class, rclpy_factory

DEFAULTS = {
    "mode": "nonparametric",
    "model": "",
    "models_dir": os.environ.get("CLASS_MODELS_DIR", "models"),
    "device": "cpu",
    "control_hz": 10.0,
    "n_action_steps": 0,
    "obs_keys": [""],  # a typed empty string array; "" entries are dropped
    "action_names": [""],
    "max_obs_age": 0.25,
    "sync_tolerance": 0.0,
    "diagnostics_period": 1.0,
    "obs_sources": "",
    "obs_qos": "reliable",
}


def resolve_model(model: str, models_dir: str) -> Path:
    if not model:
        raise ValueError("parameter 'model' is empty: give a name under models_dir (e.g. model:=pusht_knn)")
    p = Path(model)
    path = p if p.is_absolute() or p.exists() else Path(models_dir) / model
    if not path.exists():
        raise FileNotFoundError(
            f"policy artifact {path} not found (model={model!r}, models_dir={models_dir!r})"
        )
    return path


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("class_policy")
        p = declare(self, DEFAULTS)
        from class_core.policy import load

        path = resolve_model(p["model"], p["models_dir"])
        policy = load(path, device=p["device"])
        cfg = PolicyCoreConfig(
            mode=p["mode"],
            control_hz=float(p["control_hz"]),
            n_action_steps=int(p["n_action_steps"]),
            obs_keys=[k for k in p["obs_keys"] if k],
            action_names=[k for k in p["action_names"] if k],
            max_obs_age=float(p["max_obs_age"]),
            sync_tolerance=float(p["sync_tolerance"]),
            diagnostics_period=float(p["diagnostics_period"]),
            obs_sources=yaml_param(self, "obs_sources", p["obs_sources"]),
        )
        self.core = PolicyCore(policy, rclpy_factory(), cfg, name=self.get_name())
        self.out = Publishers(
            self,
            {
                "/class/policy/action_chunk": "trajectory_msgs/msg/JointTrajectory",
                "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
            },
        )
        qos = SENSOR if p["obs_qos"] == "sensor_data" else RELIABLE
        for topic, typename in self.core.subscriptions().items():
            self.create_subscription(
                msg_class(typename),
                topic,
                self._callback(topic),
                RELIABLE if topic.startswith("/class/episode") else qos,
            )
        self.create_timer(1.0 / cfg.control_hz, self._tick)
        self.get_logger().info(
            f"loaded {path} ({cfg.mode}); observations {self.core.obs_keys} from {sorted(self.core.topics)}"
        )

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _callback(self, topic: str):
        def cb(msg) -> None:
            self.out.publish(self.core.on_message(topic, msg, self._now()))

        return cb

    def _tick(self) -> None:
        self.out.publish(self.core.tick(self._now()))


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, "policy_node", args=args)


if __name__ == "__main__":
    sys.exit(main())
