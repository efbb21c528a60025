#!/bin/bash
# robofume container entry point: sources ROS 2 (the system install and robofume's colcon workspace)
# where the image has them, then runs the command. The GPU image uses ROS 2 from pip and has neither.
set -e
for setup in "/opt/ros/${ROS_DISTRO:-kilted}/setup.bash" /opt/robofume/install/setup.bash; do
  if [ -f "$setup" ]; then
    # shellcheck disable=SC1090
    source "$setup"
  fi
done
exec "$@"
