"""robofume: a robot arm that improves at a manipulation task by itself."""

__version__ = "0.1.0"
