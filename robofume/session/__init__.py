"""The fine-tuning session end to end: cached preparation, all nodes over ROS 2, monitoring, report."""
