"""File formats: each module recognises its files by content, parses them as hostile input and cuts
them into segments that rebuild them byte-exact (contract: base.py; registry: registry.py).

Importing this package registers every format, so any stored format id is readable. Formats are sniffed
in import order: ONNX last, since protobuf has no magic and every other format's is checked first.
"""

from storage.core.formats import gguf, safetensors, torchzip

# isort: split
from storage.core.formats import onnx

__all__ = ["gguf", "onnx", "safetensors", "torchzip"]
