"""Robot-side ROS 2 nodes of robofume and their plain-Python cores.

Core modules (importable without ROS): ``safety_gate``, ``realsense_camera``.
Node modules (need rclpy): ``*_node``.
"""
