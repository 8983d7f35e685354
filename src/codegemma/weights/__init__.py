"""Reading and writing model weights: Hugging Face safetensors folders and GGUF files."""

from .hf import CheckpointError, load_hf_folder, save_hf_folder

__all__ = ["CheckpointError", "load_hf_folder", "save_hf_folder"]
