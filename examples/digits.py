"""scikit-learn's digits data set as small float images, with a fixed stratified split.

The data set (1797 8x8 grey-level images, values 0..16) ships inside scikit-learn, so the
examples and the bit-exact tests need no download. Images are scaled to [0, 1] by /16 and
upsampled to size x size with bilinear interpolation (``align_corners=False``; the result
stays inside [0, 1]), because the example CNNs downsample by 8 and 8x8 is too small for
that. The split is scikit-learn's ``train_test_split`` with ``test_size=0.2``,
``stratify=labels`` and ``random_state=seed``: 1437 training and 360 test images for seed 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

TEST_FRACTION = 0.2


def digits_images(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as float32 N x 1 x size x size in [0, 1] and int64 labels."""
    data = load_digits()
    x = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0).contiguous(), torch.from_numpy(data.target.astype(np.int64))


def load_digits_split(size: int = 16, seed: int = 0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): a fixed stratified 80/20 split of the digits."""
    x, y = digits_images(size)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=TEST_FRACTION,
                                           stratify=y.numpy(), random_state=seed)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]
