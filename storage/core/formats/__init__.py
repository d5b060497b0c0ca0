"""File formats: each module recognises its files by content, parses them as hostile input and cuts
them into segments that rebuild the file byte-exact (contract: base.py; registry: registry.py).

Importing this package registers every format, so any stored format id is readable.
"""

from storage.core.formats import gguf, onnx, safetensors, torchzip

__all__ = ["gguf", "onnx", "safetensors", "torchzip"]
