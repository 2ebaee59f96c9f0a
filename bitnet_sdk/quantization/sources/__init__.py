"""Readers of the models the pipeline quantizes: Hugging Face checkpoints (safetensors, or PyTorch
state dicts with ``torch``), GGUF language models and ONNX feed-forward networks."""
