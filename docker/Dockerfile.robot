# syntax=docker/dockerfile:1
# robofume robot PC image: ROS 2 Kilted (apt) + the robofume_robot package built with colcon:
# RealSense camera, arm adapter (MoveIt Servo), safety gate, and the MuJoCo mock arm.
#
#   docker build -f docker/Dockerfile.robot -t robofume-robot:0.1.0 .      # from the repository root
#   docker run --rm --network host --ipc host robofume-robot:0.1.0          # mock robot, localhost only
#
# docker/compose.yaml runs it on the robot PC of a two-machine deployment (docker/README.md).
FROM ros:kilted-ros-base-noble

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MUJOCO_GL=egl \
    PYOPENGL_PLATFORM=egl

# Python venv + compiler (evdev, a dependency of gym-hil, builds from source); headless EGL rendering
# for the mock arm; libusb for the RealSense camera; Fast DDS, the RMW robofume's DDS profile is for.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential \
        python3-dev \
        python3-venv \
        libegl1 \
        libgl1-mesa-dri \
        libusb-1.0-0 \
        ros-kilted-rmw-fastrtps-cpp \
    && rm -rf /var/lib/apt/lists/*

# A venv that also sees the system Python; ROS 2's Python packages come from /opt/ros via setup.bash.
ENV VIRTUAL_ENV=/opt/robofume/venv
ENV PATH=/opt/robofume/venv/bin:$PATH
RUN python3 -m venv --system-site-packages "$VIRTUAL_ENV"

# Dependencies first (cached while only the sources change), pinned by constraints.txt.
COPY docker/constraints.txt docker/requirements-robot.txt /opt/robofume/docker/
RUN pip install --no-cache-dir \
        -c /opt/robofume/docker/constraints.txt \
        -r /opt/robofume/docker/requirements-robot.txt

# robofume itself (the nodes import robofume.*), then robot_ws built by colcon with the venv's Python
# so `ros2 launch robofume_robot <robot>_robot.launch.yaml` and `ros2 run robofume_robot <node>` work.
COPY . /opt/robofume/src
RUN pip install --no-cache-dir --no-deps --editable /opt/robofume/src
WORKDIR /opt/robofume/src/robot_ws
RUN . /opt/ros/kilted/setup.bash \
    && colcon --log-base /dev/null build \
        --build-base /tmp/robofume-build \
        --install-base /opt/robofume/install \
    && rm -rf /tmp/robofume-build

COPY docker/entrypoint.sh /usr/local/bin/robofume-entrypoint

# Non-root user robofume, uid 1000 (replaces the base image's "ubuntu"); video and plugdev for the camera.
RUN if id ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && useradd --create-home --uid 1000 --user-group --groups video,plugdev --shell /bin/bash robofume \
    && mkdir -p /workspace /home/robofume/.robofume \
    && chown robofume:robofume /workspace /home/robofume/.robofume
USER 1000:1000
WORKDIR /workspace

# Localhost-only discovery unless the deployment says otherwise (docker/compose.yaml sets SUBNET).
ENV ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
    RMW_IMPLEMENTATION=rmw_fastrtps_cpp \
    FASTDDS_DEFAULT_PROFILES_FILE=/opt/robofume/install/robofume_robot/share/robofume_robot/config/fastdds_shm.xml

ENTRYPOINT ["/usr/local/bin/robofume-entrypoint"]
CMD ["ros2", "launch", "robofume_robot", "mock_robot.launch.yaml"]
