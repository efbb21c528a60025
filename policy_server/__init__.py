"""Policy server, RL core (networks, Cal-QL, online fine-tuning, replay buffer) and async learner.

Not implemented yet: tracked by the learning-core issue.
"""
