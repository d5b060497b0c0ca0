"""deltahub storage: the pure core (safetensors parsing, tensor codecs, frames) and the stores under it."""
