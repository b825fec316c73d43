"""Train the bundled digits CNN on scikit-learn's handwritten digits; export ONNX + eval set.

This is how `digits_cnn.onnx`, `digits_eval.npz` and `digits_calib.npz` (all committed)
were made; it is not
run by `make`. It needs torch and scikit-learn, which the harness itself does not:

    python3 -m venv /tmp/train && /tmp/train/bin/pip install torch==2.13.0 scikit-learn onnx
    /tmp/train/bin/python models/zoo/train_digits.py

Data: sklearn.datasets.load_digits (1,797 8x8 images of handwritten digits, UCI ML
hand-written digits data set, shipped inside scikit-learn). 80 % train, 20 % held out as the
eval set (stratified, random_state=0); 128 training images (never eval ones) are kept as
the calibration set for static quantization. Pixel values 0..16 are scaled to 0..1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(48, 64, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def main() -> None:
    torch.manual_seed(0)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    x_train, x_eval, y_train, y_eval = train_test_split(
        images, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    for epoch in range(60):
        model.train()
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[batch]), yt[batch])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(x_eval)).argmax(1).numpy() == y_eval).mean()
    print(f"eval accuracy (torch): {accuracy:.4f} on {len(y_eval)} held-out digits")
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 8, 8),
        str(HERE / "digits_cnn.onnx"),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
        dynamo=False,
    )
    np.savez_compressed(HERE / "digits_eval.npz", input=x_eval, labels=y_eval.astype(np.int64))
    np.savez_compressed(HERE / "digits_calib.npz", input=x_train[:128])


if __name__ == "__main__":
    main()
