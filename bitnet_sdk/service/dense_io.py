"""Tensors in and out of dense models: JSON arrays to numpy, outputs to response fields.

A dense model (``kind == "dense"``) is run as ``model.predict(inputs)`` on a
float32 array whose first axis is the batch. The response gives, per sample,
``outputs`` (what ``predict`` returned, rank 1 to 3 per sample),
``predictions`` (index of the largest output in the flattened sample) and,
when asked, ``probabilities`` (softmax over the last axis of each sample).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bitnet_sdk.service.inference_plan import InferenceError, unprocessable

__all__ = ["predict", "response_fields", "softmax"]


def predict(predict_fn: Callable[[np.ndarray], Any], inputs: Any) -> np.ndarray:
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
        return np.asarray(predict_fn(x))
    except ValueError as exc:  # the model's own shape checks
        raise unprocessable(f"The model cannot take these inputs: {exc}") from exc


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (float64)."""
    shifted = np.asarray(x, dtype=np.float64) - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def response_fields(outputs: Any, return_probabilities: bool) -> dict[str, Any]:
    """``outputs``, ``predictions`` and (optionally) ``probabilities`` for the response."""
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim == 1:  # one value per sample
        out = out[:, None]
    if not 2 <= out.ndim <= 4 or out.shape[0] == 0 or out.size == 0:
        raise InferenceError(500, "Internal Server Error",
                             f"The model returned outputs of shape {out.shape}.", slug="internal")
    if not np.isfinite(out).all():
        raise InferenceError(500, "Internal Server Error",
                             "The model returned non-finite outputs.", slug="internal")
    fields: dict[str, Any] = {
        "outputs": out.tolist(),
        "predictions": out.reshape(out.shape[0], -1).argmax(axis=1).tolist(),
    }
    if return_probabilities:
        fields["probabilities"] = softmax(out, axis=-1).tolist()
    return fields
