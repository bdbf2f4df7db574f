"""Making models: the PyTorch + MONAI training loop, ensembles of runs, ONNX export with its card,
fine-tuning plans, and background fine-tuning jobs registered in the store.

May import: `segloop.io`, `segloop.data`, `segloop.model`, `segloop.store`, `segloop.config`, `segloop.errors`.
"""
