"""Model registry: backbones are built by name.

    @register_model
    def xception(**kwargs): ...

    model = create_model("xception", num_classes=2)
"""
from typing import Callable

import torch.nn as nn

__all__ = ["register_model", "create_model", "list_models", "is_model"]

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model entrypoint under its function name."""
    _model_entrypoints[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of every registered backbone, sorted."""
    return sorted(_model_entrypoints)


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered backbone by name.

    Args:
        name: a name from `list_models()`, e.g. "xception".
        **kwargs: passed to the entrypoint; `None` values are dropped so callers
            can forward optional CLI flags unchanged.
    """
    if name not in _model_entrypoints:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(list_models())}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return _model_entrypoints[name](**kwargs)
