"""A segmentation model as the app serves it: the network definition, the model card (one typed
schema), preprocessing shared with training, ONNX Runtime inference, and the metrics (Dice, HD95).

May import: `segloop.io`, `segloop.data`, `segloop.config`, `segloop.errors`.
"""
