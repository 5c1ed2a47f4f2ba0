"""RealSense camera: native image on /camera/camera/color/image_raw, 256x256 crop on
/class/obs/image. With camera.driver=external it only crops behind realsense2_camera."""

from __future__ import annotations

import threading

import rclpy
from rclpy.node import Node

from class_core import ros_msgs as rm
from class_core.hardware.camera import RealSenseCamera, resize_center_crop
from class_ros.common import RELIABLE, SENSOR, run_node
from class_ros.hw_common import robot_config
from class_ros.msg_factory import msg_class, rclpy_factory

NATIVE, CROP = "/camera/camera/color/image_raw", "/class/obs/image"


# config: path to robot.yaml; overrides: key=value list applied to it
DEFAULTS = {"config": "config/robot.yaml", "overrides": [""]}


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("class_camera")
        self.cfg = robot_config(self, DEFAULTS)[1]["camera"]
        self.f = rclpy_factory()
        self.pub_crop = self.create_publisher(msg_class("sensor_msgs/msg/Image"), CROP, RELIABLE)
        if self.cfg.driver == "external":
            self.create_subscription(msg_class("sensor_msgs/msg/Image"), NATIVE, self.on_image, SENSOR)
            return
        self.pub_native = self.create_publisher(msg_class("sensor_msgs/msg/Image"), NATIVE, SENSOR)
        self.cam = RealSenseCamera(self.cfg)
        self.cam.start()
        self._run = True
        self._thread = threading.Thread(target=self.loop, daemon=True)
        self._thread.start()

    def publish_crop(self, rgb, stamp_ns: int) -> None:
        crop = resize_center_crop(rgb, self.cfg.crop_size)
        self.pub_crop.publish(
            rm.numpy_to_image(self.f, crop, stamp_ns, frame_id="camera_color_optical_frame")
        )

    def on_image(self, msg) -> None:
        self.publish_crop(rm.image_to_rgb(msg), rm.stamp_ns(msg))

    def loop(self) -> None:
        while self._run and rclpy.ok():
            fr = self.cam.read()
            stamp = int(fr.stamp_s * 1e9)
            self.pub_native.publish(
                rm.numpy_to_image(self.f, fr.rgb, stamp, frame_id="camera_color_optical_frame")
            )
            self.publish_crop(fr.rgb, stamp)

    def destroy_node(self) -> None:
        self._run = False
        if getattr(self, "cam", None) is not None:
            self._thread.join(timeout=2.0)
            self.cam.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(CameraNode, "camera_node", args=args)
