"""Inference: plan a request, lease a loaded model from the cache, run it; the OpenAI translation."""
