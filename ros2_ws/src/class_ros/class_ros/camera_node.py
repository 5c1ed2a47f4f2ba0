"""RealSense camera, realsense-ros topic names: Image on /camera/camera/color/image_raw and
CameraInfo on /camera/camera/color/camera_info (frame camera_color_optical_frame), plus the
256x256 crop on /class/obs/image. With camera.driver=external it only crops behind
realsense2_camera. fake_hardware:=true reads a pyrealsense2 software_device fed with synthetic
frames of the configured size and rate (hw_common.FakeRealSense) instead of a camera."""

from __future__ import annotations

import threading

import rclpy
from rclpy.node import Node

from class_core import ros_msgs as rm
from class_core.hardware.camera import RealSenseCamera, resize_center_crop
from class_ros.common import RELIABLE, SENSOR, run_node
from class_ros.hw_common import FakeRealSense, camera_info_msg, exit_logger, robot_config
from class_ros.msg_factory import msg_class, rclpy_factory

NATIVE, INFO, CROP = (
    "/camera/camera/color/image_raw",
    "/camera/camera/color/camera_info",
    "/class/obs/image",
)
FRAME_ID = "camera_color_optical_frame"


# config: path to robot.yaml; overrides: key=value list applied to it; fake_hardware: a
# software_device with synthetic frames instead of a RealSense
DEFAULTS = {"config": "config/robot.yaml", "overrides": [""], "fake_hardware": False}


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("class_camera")
        params, cfgs = robot_config(self, DEFAULTS)
        self.cfg = cfgs["camera"]
        self.f = rclpy_factory()
        self.cam: RealSenseCamera | None = None
        self.fake: FakeRealSense | None = None
        self._threads: list[threading.Thread] = []
        self._run = False
        # the newest frame for the crop thread: (rgb, stamp); cropping (INTER_AREA, tens of ms at
        # 1280x720) runs beside the capture so it never holds up the native stream
        self._pending: tuple[object, int] | None = None
        self._cv = threading.Condition()
        self.pub_crop = self.create_publisher(msg_class("sensor_msgs/msg/Image"), CROP, RELIABLE)
        if self.cfg.driver == "external" and not params["fake_hardware"]:
            self.create_subscription(msg_class("sensor_msgs/msg/Image"), NATIVE, self.on_image, SENSOR)
            return
        # reliable, as realsense-ros publishes by default: a best-effort 2.7 MB frame travels in
        # many fragments and is lost whole with any one of them (best-effort readers still match)
        self.pub_native = self.create_publisher(msg_class("sensor_msgs/msg/Image"), NATIVE, RELIABLE)
        self.pub_info = self.create_publisher(msg_class("sensor_msgs/msg/CameraInfo"), INFO, RELIABLE)
        device = None
        if params["fake_hardware"]:
            self.fake = FakeRealSense(self.cfg.width, self.cfg.height, self.cfg.fps)
            device = self.fake.device
        self.cam = RealSenseCamera(self.cfg, device=device)
        self.cam.start()
        self.intrinsics = self.cam.profile.as_video_stream_profile().get_intrinsics()
        if self.fake is not None:
            self.fake.start()
        self.get_logger().info(
            f"camera started: {self.cfg.width}x{self.cfg.height}@{self.cfg.fps}"
            + (" (fake: software_device)" if self.fake is not None else "")
        )
        self._run = True
        self._threads = [
            threading.Thread(target=self.loop, name="camera", daemon=True),
            threading.Thread(target=self.crop_loop, name="camera-crop", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def publish_crop(self, rgb, stamp_ns: int) -> None:
        crop = resize_center_crop(rgb, self.cfg.crop_size)
        self.pub_crop.publish(rm.numpy_to_image(self.f, crop, stamp_ns, frame_id=FRAME_ID))

    def on_image(self, msg) -> None:
        self.publish_crop(rm.image_to_rgb(msg), rm.stamp_ns(msg))

    def loop(self) -> None:
        """Reads frames until stopped; a late frame is reported and waited for again, and a
        shutdown of the context (SIGINT, SIGTERM) ends the loop quietly."""
        assert self.cam is not None
        timeouts = 0
        while self._run:
            try:
                fr = self.cam.read()
            except RuntimeError as e:  # no frame within camera.timeout_ms
                if not self._run:
                    break
                timeouts += 1
                if timeouts <= 5 or timeouts % 100 == 0:
                    self.get_logger().warning(f"camera: {e} ({timeouts} so far)")
                continue
            stamp = int(fr.stamp_s * 1e9)
            with self._cv:
                self._pending = (fr.rgb, stamp)
                self._cv.notify()
            if not self._publish(self._publish_native, fr.rgb, stamp):
                break

    def _publish_native(self, rgb, stamp: int) -> None:
        self.pub_native.publish(rm.numpy_to_image(self.f, rgb, stamp, frame_id=FRAME_ID))
        self.pub_info.publish(camera_info_msg(self.f, self.intrinsics, stamp, FRAME_ID))

    def _publish(self, fn, rgb, stamp: int) -> bool:
        """``fn(rgb, stamp)``; False once shutting down (the publishers' context is gone)."""
        try:
            fn(rgb, stamp)
        except Exception as e:
            if not self._run or not rclpy.ok(context=self.context):
                return False
            self.get_logger().error(f"camera: publishing a frame failed: {e}")
        return True

    def crop_loop(self) -> None:
        """Crops the newest frame whenever one is waiting (a frame that arrives while the last
        is being cropped replaces the one before it: the crop is never late, at worst sparser)."""
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or not self._run, timeout=0.5)
                if not self._run:
                    return
                job, self._pending = self._pending, None
            if job is not None and not self._publish(self.publish_crop, *job):
                return

    def stop_camera(self) -> None:
        """Stops capture first (the reader threads, the fake device's feeder, then the sensor)."""
        with self._cv:
            self._run = False
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=2.0 + self.cfg.timeout_ms / 1000)
        self._threads = []
        if self.cam is not None:
            # the fake device's feeder first: no frame may be pushed into a sensor being stopped
            if self.fake is not None:
                self.fake.stop()
            self.cam.stop()
            self.cam = None
            exit_logger(self).info("camera stopped")

    def destroy_node(self) -> None:
        self.stop_camera()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(CameraNode, "camera_node", on_exit=lambda node: node.stop_camera(), args=args)
