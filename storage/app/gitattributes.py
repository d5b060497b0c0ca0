"""The .gitattributes the Hugging Face Hub writes in the initial commit of every new repository.

The model file is byte for byte the Hub's (1,519 bytes: the formats it keeps in LFS). Dataset
repositories get the same list with the archive, audio, image and video formats datasets hold.
"""

from __future__ import annotations

_LFS = " filter=lfs diff=lfs merge=lfs -text"

_MODEL_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
    "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar",
    "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)

_DATASET_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.lz4",
    "*.mds", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
    "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar",
    "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    "# Audio files - uncompressed", "*.pcm", "*.sam", "*.raw",
    "# Audio files - compressed", "*.aac", "*.flac", "*.mp3", "*.ogg", "*.wav",
    "# Image files - uncompressed", "*.bmp", "*.gif", "*.png", "*.tiff",
    "# Image files - compressed", "*.jpg", "*.jpeg", "*.webp",
    "# Video files - compressed", "*.mp4", "*.webm",
)


def _render(patterns: tuple[str, ...]) -> bytes:
    return "".join(p + "\n" if p.startswith("#") else p + _LFS + "\n" for p in patterns).encode()


MODEL_GITATTRIBUTES = _render(_MODEL_PATTERNS)
DATASET_GITATTRIBUTES = _render(_DATASET_PATTERNS)


def default_gitattributes(repo_type: str) -> bytes:
    return DATASET_GITATTRIBUTES if repo_type == "dataset" else MODEL_GITATTRIBUTES
