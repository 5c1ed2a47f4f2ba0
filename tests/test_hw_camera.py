"""Camera: crop against a reference, clock mapping, and capture from a pyrealsense2
software_device fed with synthetic 1280x720 frames."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from class_core.hardware.camera import CameraConfig, ClockOffsetEstimator, RealSenseCamera, resize_center_crop


def test_resize_center_crop_matches_area_average():
    # 1280x720 -> short side 256 is a factor 2.8125; use 1024x576 (factor 2.25) and 1536x768
    # (exact factor 3): INTER_AREA with an integer factor is the block mean
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (768, 1536, 3), dtype=np.uint8)
    out = resize_center_crop(img, 256)
    ref = img.reshape(256, 3, 512, 3, 3).astype(np.float64).mean(axis=(1, 3))
    ref = np.rint(ref[:, 128:384]).astype(np.uint8)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    # the centre crop of a 1280x720 frame: a marker at the frame centre lands at the crop centre
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[350:370, 630:650] = 255
    c = resize_center_crop(frame, 256)
    ys, xs = np.nonzero(c[..., 0] > 128)
    assert abs(ys.mean() - 127.5) < 1.0 and abs(xs.mean() - 127.5) < 1.0
    # portrait input: the short side is the width
    assert resize_center_crop(np.zeros((500, 300, 3), np.uint8), 256).shape == (256, 256, 3)
    with pytest.raises(ValueError, match="uint8"):
        resize_center_crop(np.zeros((10, 10, 3), np.float32))


def test_clock_offset_estimator_recovers_offset_under_jitter_and_drift():
    rng = np.random.default_rng(1)
    est = ClockOffsetEstimator(window_s=3.0)
    offset, drift = 1.7e9, 50e-6  # device clock runs 50 ppm slow
    errs = []
    for k in range(600):  # 20 s at 30 fps
        true_host = 100.0 + k / 30
        device = (true_host - offset) * (1 - drift)  # device counter
        latency = 0.004 + rng.exponential(0.006)
        stamped = est.update(device, true_host + latency)
        if k > 60:
            errs.append(stamped - true_host)
    errs_a = np.array(errs)
    # error = smallest latency in the window + drift within the window, a few ms at most
    assert np.abs(errs_a).max() < 0.006 and np.median(np.abs(errs_a)) < 0.0055
    # a device clock reset restarts the estimate instead of poisoning it
    est.update(5.0, 200.0)
    assert est.offset == pytest.approx(195.0)


def synthetic_realsense(w=1280, h=720, fps=30, serial="SYN0001"):
    rs = pytest.importorskip("pyrealsense2")
    dev = rs.software_device()
    sensor = dev.add_sensor("Color")
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid = rs.stream.color, 0, 0
    vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = w, h, fps, 3, rs.format.rgb8
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = w, h, 900.0, 900.0, w / 2, h / 2
    vs.intrinsics = intr
    profile = sensor.add_video_stream(vs).as_video_stream_profile()
    dev.register_info(rs.camera_info.serial_number, serial)
    return rs, dev, sensor, profile


def test_capture_from_software_device():
    rs, dev, sensor, profile = synthetic_realsense()
    cam = RealSenseCamera(CameraConfig(serial="SYN0001", timeout_ms=2000), device=dev)
    cam.start()
    offset = 1000.0  # device clock (ms) starts 1000 s behind host time
    host0 = time.time()
    frames = []
    pixels = []

    def feed():
        for k in range(12):
            img = np.zeros((720, 1280, 3), np.uint8)
            img[..., 0] = k  # R channel carries the frame index
            img[..., 2] = 200
            f = rs.software_video_frame()
            f.pixels, f.bpp, f.stride = img, 3, 1280 * 3
            f.timestamp = (host0 + k / 30 - offset) * 1e3
            f.domain = rs.timestamp_domain.hardware_clock
            f.frame_number = k if k < 6 else k + 2  # two frames lost
            f.profile = profile
            pixels.append(img)
            sensor.on_video_frame(f)
            time.sleep(1 / 30)

    th = threading.Thread(target=feed)
    th.start()
    try:
        while len(frames) < 10:
            frames.append(cam.read())
    finally:
        th.join()
        cam.stop()
    f0 = frames[0]
    assert f0.rgb.shape == (720, 1280, 3) and f0.rgb.dtype == np.uint8
    assert f0.rgb[0, 0, 2] == 200  # RGB order kept
    idx = [int(f.rgb[0, 0, 0]) for f in frames]
    assert idx == sorted(idx)
    assert cam.dropped >= 2
    for f in frames:  # host stamp = device time + estimated offset, not the arrival time
        k = int(f.rgb[0, 0, 0])
        assert abs(f.stamp_s - (host0 + k / 30)) < 0.05
        assert f.stamp_s <= f.host_arrival_s + 1e-6
    crop = resize_center_crop(f0.rgb)
    assert crop.shape == (256, 256, 3) and crop[128, 128, 2] == 200


def test_camera_errors_name_what_is_wrong():
    rs, dev, sensor, profile = synthetic_realsense(w=640, h=480)
    cam = RealSenseCamera(CameraConfig(), device=dev)
    with pytest.raises(RuntimeError, match="no colour stream 1280x720@30"):
        cam.start()
    with pytest.raises(ValueError, match="camera.fps"):
        CameraConfig(fps=0)
    with pytest.raises(RuntimeError, match="not started"):
        RealSenseCamera(CameraConfig()).read()
