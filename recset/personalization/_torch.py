"""torch plumbing: the import check, device choice and mixed precision."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import TYPE_CHECKING

from recset.errors import ConfigError

if TYPE_CHECKING:
    import torch

_INSTALL = "the neural stage needs torch and torch_geometric: pip install 'recset[neural]'"


def require_torch() -> None:
    """Raise :class:`ImportError` naming the extra when torch or torch_geometric is missing."""
    missing = [m for m in ("torch", "torch_geometric") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{_INSTALL} (missing: {', '.join(missing)})")


def resolve_device(device: str, owner: str = "NeuralConfig") -> torch.device:
    """The torch device for a ``device`` setting: the one rule of every neural component.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` is CUDA when torch sees a CUDA device, else CPU.
    owner : str, default="NeuralConfig"
        What the setting belongs to, named in the error message (e.g.
        ``"TypeTransitionConfig"``).

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        ``device`` is ``"cuda"`` but torch sees no CUDA device, or ``device`` is not one of
        the three values.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"The 'device' parameter of {owner} is 'cuda' but torch sees no CUDA device; "
            "use 'auto' or 'cpu'."
        )
    if device not in ("cpu", "cuda"):
        raise ConfigError(
            f"The 'device' parameter must be one of ['auto', 'cpu', 'cuda']. Got {device!r} "
            "instead."
        )
    return torch.device(device)


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """Mixed precision (bfloat16 where supported, else float16) on CUDA; nothing on CPU."""
    import torch

    if device.type != "cuda":
        yield
        return
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    with torch.autocast(device_type="cuda", dtype=dtype):
        yield


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for float16 autocast on CUDA; a no-op scaler elsewhere."""
    import torch

    fp16 = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda" if device.type == "cuda" else "cpu", enabled=fp16)
