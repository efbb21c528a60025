"""Reset-free forward/backward controller.

Not implemented yet: tracked by the session issue.
"""
