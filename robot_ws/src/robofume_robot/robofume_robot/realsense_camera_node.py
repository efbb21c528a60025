"""ROS 2 node ``camera``: publishes a RealSense color stream (live or played back) as ``sensor_msgs/Image``.

Topics (relative, so a namespace applies): ``camera/color/image_raw`` (``rgb8``) and
``camera/color/camera_info``, both with ``qos_profile_sensor_data``. Messages are stamped with the node
clock at frame arrival. Run with e.g.::

    python -m robofume_robot.realsense_camera_node --ros-args -p playback_file:=/path/rec.db3 \\
        -p width:=160 -p height:=120
"""

from __future__ import annotations

import threading
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from robofume_robot.image_ops import fit_square, fit_square_intrinsics
from robofume_robot.node_main import apply_realtime_priority
from robofume_robot.realsense_camera import (
    CameraError,
    EndOfStream,
    RealSenseCamera,
    RealSenseConfig,
)
from robofume_robot.realtime import REALTIME_PARAM
from robofume_robot.ros_image import camera_info, to_image_msg

IMAGE_TOPIC = "camera/color/image_raw"
INFO_TOPIC = "camera/color/camera_info"


class RealSenseCameraNode(Node):
    """Opens the camera on construction and publishes every frame from a background reader thread.

    Parameters (read at start-up): ``serial``, ``width``, ``height``, ``fps`` (0 = any), ``playback_file``,
    ``frame_timeout_ms``, ``frame_id``. Raises ``ValueError`` for bad parameters and
    :class:`~robofume_robot.realsense_camera.CameraError` when the camera or recording cannot be opened.
    At the end of a recording it logs once and stops publishing; the node itself stays up.
    """

    def __init__(self, node_name: str = "camera", **kwargs: Any) -> None:
        """Declare and validate parameters, start the camera and the reader thread (``kwargs`` go to Node)."""
        super().__init__(node_name, **kwargs)
        # Set first: rclpy's context cleanup calls destroy_node() even if this constructor raises below.
        self.camera: RealSenseCamera | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.frames_published = 0
        self.finished = threading.Event()
        """Set when the reader thread has ended (end of recording, shutdown or a fatal error)."""
        defaults = RealSenseConfig()

        def declare(name: str, default: Any, description: str) -> Any:
            return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

        config = RealSenseConfig(
            serial=str(declare("serial", defaults.serial, "device serial number; empty = first device")),
            width=declare("width", defaults.width, "color width in pixels; 0 = any"),
            height=declare("height", defaults.height, "color height in pixels; 0 = any"),
            fps=declare("fps", defaults.fps, "color frame rate; 0 = any"),
            playback_file=str(declare("playback_file", "", "play this recording instead of a live camera")),
            frame_timeout_ms=declare("frame_timeout_ms", defaults.frame_timeout_ms, "max wait per frame"),
        )
        self.frame_id = str(declare("frame_id", "camera_color_optical_frame", "header.frame_id"))
        declare(REALTIME_PARAM, 0, "SCHED_FIFO priority of this node's threads (1-99; 0 = normal scheduling)")
        self.output_size = int(
            declare("output_size", 0, "publish centre-cropped square frames of this side; 0 = camera size")
        )
        if self.output_size < 0:
            raise ValueError(f"parameter output_size must be >= 0, got {self.output_size}")
        if not self.frame_id:
            raise ValueError("parameter frame_id must not be empty")

        self.image_pub = self.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, INFO_TOPIC, qos_profile_sensor_data)
        # Start the camera last: a recording starts playing (in real time) as soon as the pipeline starts.
        camera = RealSenseCamera(config)
        camera.start()
        self.camera = camera
        width, height = camera.size
        fx, fy, cx, cy = camera.intrinsics()
        if self.output_size:
            fx, fy, cx, cy = fit_square_intrinsics(width, height, fx, fy, cx, cy, self.output_size)
            width = height = self.output_size
        self._info = camera_info(
            width, height, fx, fy, cx, cy, self.get_clock().now().to_msg(), self.frame_id
        )
        self._thread = threading.Thread(target=self._run, name="realsense_reader", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"streaming {width}x{height}@{camera.fps} from "
            f"{config.playback_file or 'RealSense ' + (camera.serial or '?')} "
            f"on {self.resolve_topic_name(IMAGE_TOPIC)}"
        )

    def _run(self) -> None:
        """Reader thread: read, stamp at arrival, publish; ends on stop, end of recording or shutdown."""
        logger = self.get_logger()
        camera = self.camera
        assert camera is not None
        try:
            while not self._stop.is_set():
                try:
                    frame = camera.read()
                except EndOfStream:
                    logger.info(f"end of recording after {self.frames_published} frames; stopped publishing")
                    return
                except CameraError as exc:
                    if self._stop.is_set():
                        return
                    logger.warning(str(exc), throttle_duration_sec=5.0)
                    continue
                stamp = self.get_clock().now().to_msg()
                if self._stop.is_set() or not self.context.ok():
                    return
                self._info.header.stamp = stamp
                rgb = fit_square(frame.rgb, self.output_size) if self.output_size else frame.rgb
                self.image_pub.publish(to_image_msg(rgb, stamp, self.frame_id))
                self.info_pub.publish(self._info)
                self.frames_published += 1
        except Exception as exc:  # keep the process alive but say why frames stopped
            if self.context.ok() and not self._stop.is_set():
                logger.error(f"camera reader stopped: {type(exc).__name__}: {exc}")
        finally:
            self.finished.set()

    def stop(self) -> None:
        """Stop the reader thread and release the camera (idempotent)."""
        self._stop.set()
        thread, camera = self._thread, self.camera
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            timeout_s = camera.config.frame_timeout_ms / 1000.0 + 2.0 if camera is not None else 2.0
            thread.join(timeout=timeout_s)
        if camera is not None:
            camera.stop()

    def destroy_node(self) -> None:
        """Stop the camera, then destroy the node."""
        self.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Entry point: run the node until Ctrl-C; exit status 1 if the camera cannot be opened."""
    rclpy.init(args=args)
    node: RealSenseCameraNode | None = None
    try:
        node = RealSenseCameraNode()
        apply_realtime_priority(node)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (CameraError, ValueError) as exc:
        rclpy.logging.get_logger("camera").error(str(exc))
        raise SystemExit(1) from None
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
