"""Vision-language success classifier, its few-label training, the labeling tool and the reward node.

Not implemented yet: tracked by the classifier issue.
"""
