"""Tensors in and out of dense models: JSON arrays to numpy, outputs to response fields.

A dense model (``kind == "dense"``, ``bitnet_sdk.dense.DenseModel``) is run as
``model.predict(inputs)`` on a float32 array whose first axis is the batch; it
returns a ``Prediction`` (its first output, and for classifiers the softmax
probabilities and arg-max labels) or a bare array. The response gives, per
sample, ``outputs`` (rank 1 to 3 per sample), ``predictions`` (the classifier's
label, else the index of the largest output in the flattened sample) and, when
asked, ``probabilities`` (the classifier's own, else the softmax over the last
axis of each output).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bitnet_sdk.service.errors import ApiError, unprocessable

__all__ = ["predict", "response_fields", "softmax"]


def predict(predict_fn: Callable[[np.ndarray], Any], inputs: Any) -> Any:
    """Run ``predict_fn`` on ``inputs`` as float32; 422 for ragged or unusable inputs."""
    try:
        x = np.asarray(inputs, dtype=np.float32)
    except (ValueError, TypeError):
        raise unprocessable("inputs must be rectangular: every sample of the same shape.",
                            errors=[{"field": "inputs", "message": "ragged nested arrays"}]
                            ) from None
    if not np.isfinite(x).all():
        raise unprocessable("inputs must be finite float32 numbers.")
    try:
        return predict_fn(x)
    except (ValueError, IndexError) as exc:  # the model's own shape checks
        raise unprocessable(f"The model cannot take these inputs: {exc}") from exc


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (float64)."""
    shifted = np.asarray(x, dtype=np.float64) - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def _per_sample(values: Any, what: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64)
    if out.ndim == 1:  # one value per sample
        out = out[:, None]
    if not 2 <= out.ndim <= 4 or out.shape[0] == 0 or out.size == 0:
        raise ApiError(500, "Internal Server Error",
                       f"The model returned {what} of shape {out.shape}.", slug="internal")
    if not np.isfinite(out).all():
        raise ApiError(500, "Internal Server Error",
                       f"The model returned non-finite {what}.", slug="internal")
    return out


def response_fields(result: Any, return_probabilities: bool) -> dict[str, Any]:
    """``outputs``, ``predictions`` and (optionally) ``probabilities`` for the response."""
    out = _per_sample(getattr(result, "output", result), "outputs")
    labels = getattr(result, "labels", None)
    if labels is not None and np.ndim(labels) == 1 and len(labels) == out.shape[0]:
        predictions = [int(v) for v in labels]
    else:
        predictions = out.reshape(out.shape[0], -1).argmax(axis=1).tolist()
    fields: dict[str, Any] = {"outputs": out.tolist(), "predictions": predictions}
    if return_probabilities:
        own = getattr(result, "probabilities", None)
        probs = softmax(out, axis=-1) if own is None else _per_sample(own, "probabilities")
        fields["probabilities"] = probs.tolist()
    return fields
