"""Metrics: accuracy, harmonic mean, linear probes, and the continual-learning accuracy matrix."""
from __future__ import annotations

import numpy as np
import torch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()


def harmonic_mean(base: float, new: float) -> float:
    """CoCoOp's H = 2 * base * new / (base + new)."""
    return 0.0 if base + new == 0 else 2.0 * base * new / (base + new)


def linear_probe_predict(train_x, train_y, test_x, *, C: float = 1.0, max_iter: int = 2000) -> np.ndarray:
    """Test predictions of an L2-regularised logistic regression on standardised frozen features (CLIP-style)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(np.asarray(train_x), np.asarray(train_y))
    return clf.predict(np.asarray(test_x))


def linear_probe(train_x, train_y, test_x, test_y, *, C: float = 1.0, max_iter: int = 2000) -> float:
    """Accuracy of :func:`linear_probe_predict` on the test set."""
    return float((linear_probe_predict(train_x, train_y, test_x, C=C, max_iter=max_iter) == np.asarray(test_y)).mean())


def average_accuracy(acc_matrix) -> float:
    """Mean accuracy over all tasks after the last task: mean of the last row of the T x T matrix."""
    a = np.asarray(acc_matrix, dtype=float)
    return float(a[-1].mean())


def forgetting(acc_matrix) -> float:
    """Mean over old tasks j < T of (max over earlier steps t < T of a[t, j]) - a[T-1, j].

    ``acc_matrix[t, j]`` is the accuracy on task j after training task t (row = after task t).
    """
    a = np.asarray(acc_matrix, dtype=float)
    T = a.shape[0]
    if T < 2:
        return 0.0
    return float(np.mean([a[:T - 1, j].max() - a[T - 1, j] for j in range(T - 1)]))
