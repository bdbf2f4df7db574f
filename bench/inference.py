"""Inference speed: the shipped model through ONNX Runtime vs PyTorch eager, on the same real cases.

Times the network forward pass on each case's preprocessed (normalised, padded) volume after warm-up,
and the whole user-visible path of one case: load NIfTI -> preprocess -> ONNX Runtime -> softmax,
argmax, uncertainty, largest component -> save the label map (.nii.gz).

    .venv/bin/python bench/inference.py [--data ../shared/data/msd-hippocampus] [--cases 20] [--repeats 3]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segloop.config import shared_data_dir  # noqa: E402
from segloop.data.splits import msd_cases  # noqa: E402
from segloop.io.readers import load_scan  # noqa: E402
from segloop.io.writers import save_label  # noqa: E402
from segloop.model.card import card_path_for, load_card  # noqa: E402
from segloop.model.inference import default_model_path, get_session, predict  # noqa: E402
from segloop.model.preprocessing import normalize, pad_to_multiple  # noqa: E402
from segloop.training.loop import load_model  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(shared_data_dir() / "msd-hippocampus"), help="MSD hippocampus folder")
    ap.add_argument("--model", default=str(default_model_path()), help="ONNX model (its .pt checkpoint must lie beside it)")
    ap.add_argument("--cases", type=int, default=20, help="number of validation cases to time (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per case (default: %(default)s)")
    args = ap.parse_args()

    import torch

    model_path = Path(args.model)
    card = load_card(card_path_for(model_path))
    names = set(card.split.get("validation") or [])
    cases = [c for c in msd_cases(args.data) if c.name in names][: args.cases]
    divisor = card.input.size_divisor
    patch = card.input.patch
    inputs = []
    for c in cases:
        img = normalize(load_scan(c.image).array, card.input.normalization)
        inputs.append(pad_to_multiple(img[None, None], divisor, min_shape=patch)[0])

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    net, _ = load_model(model_path.with_suffix(".pt"))
    sess = get_session(model_path)
    run = sess.session.run

    def torch_fwd(x):
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    def ort_fwd(x):
        return run(None, {"image": x})[0]

    for x in inputs[:3]:  # warm-up both engines
        torch_fwd(x), ort_fwd(x)
    ort_ms = [median_ms(lambda x=x: ort_fwd(x), args.repeats) for x in inputs]
    torch_ms = [median_ms(lambda x=x: torch_fwd(x), args.repeats) for x in inputs]

    out_dir = Path(tempfile.mkdtemp(prefix="segloop-bench-"))

    def whole_case(c):
        vol = load_scan(c.image)
        pred = predict(vol, model_path)
        save_label(pred.labels, vol, out_dir / f"{c.name}.nii.gz")

    whole_case(cases[0])
    whole_ms = [median_ms(lambda c=c: whole_case(c), args.repeats) for c in cases]

    result = {
        "cases": len(cases),
        "padded_shapes": sorted({tuple(int(s) for s in x.shape[2:]) for x in inputs}),
        "threads": threads,
        "provider": sess.provider,
        "onnxruntime_ms_median": round(statistics.median(ort_ms), 2),
        "pytorch_eager_ms_median": round(statistics.median(torch_ms), 2),
        "speedup_onnxruntime_vs_eager": round(statistics.median(torch_ms) / statistics.median(ort_ms), 2),
        "whole_case_ms_median": round(statistics.median(whole_ms), 2),
        "whole_case_ms_p90": round(float(np.percentile(whole_ms, 90)), 2),
    }
    print(f"{'path':<44}{'median ms':>12}")
    print(f"{'network forward, ONNX Runtime (' + sess.provider.replace('ExecutionProvider', '') + ')':<44}"
          f"{result['onnxruntime_ms_median']:>12.1f}")
    print(f"{'network forward, PyTorch eager':<44}{result['pytorch_eager_ms_median']:>12.1f}")
    print(f"{'whole case: load+preprocess+infer+post+save':<44}{result['whole_case_ms_median']:>12.1f}")
    print(f"ONNX Runtime is {result['speedup_onnxruntime_vs_eager']}x faster than eager on {len(cases)} real cases")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
