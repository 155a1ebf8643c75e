"""Import the official `qwen-tts` 0.1.1 package for fixture generation (never at runtime).

`qwen_tts/__init__.py` eagerly imports the unreleased 25 Hz tokenizer, which needs `sox`,
`onnxruntime` and `torchaudio`; none is used by the 12 Hz path. Stub them so the import works and
any real use fails loudly.
"""

import importlib.machinery
import sys
import types


class _Missing(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"{self.__name__}.{name} used: stubbed for fixture generation only")


def stub_unused_modules() -> None:
    for name in ("sox", "onnxruntime", "torchaudio", "torchaudio.compliance",
                 "torchaudio.compliance.kaldi"):
        if name not in sys.modules:
            mod = _Missing(name)
            mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = mod
            parent, _, child = name.rpartition(".")
            if parent:
                object.__setattr__(sys.modules[parent], child, mod)


def import_qwen_tts():
    stub_unused_modules()
    import torch

    torch.set_num_threads(1)  # with 2 threads the reference is ~10x slower and not bit-stable
    import qwen_tts

    return qwen_tts
