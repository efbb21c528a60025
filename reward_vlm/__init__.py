"""Vision-language success classifier, its few-label training, the labeling tool and the reward node.

Modules: ``backbones`` (open_clip / transformers backbones, tiny local models), ``classifier``
(``SuccessClassifier``, zero-shot, confirmation), ``training`` (``robofume reward train``),
``labels`` (the label file), ``label_server`` (``robofume label``), ``reward_core`` and
``reward_node`` (the ROS 2 reward node).
"""
