"""Loss registry: ``available()``, ``build(name, **params)``, ``param_specs(name)``."""

from __future__ import annotations

from typing import Any

from fnlab.core.registry import ParamSpec, Registry

LOSSES: Registry = Registry("loss")
register = LOSSES.register


def available() -> list[str]:
    """Names of the registered losses, sorted."""
    return LOSSES.available()


def build(name: str, **params: Any):
    """Build loss ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid names) or unknown parameter.
    """
    return LOSSES.build(name, **params)


def param_specs(name: str) -> list[ParamSpec]:
    """The numeric parameters of loss ``name``, for sliders."""
    return LOSSES.param_specs(name)
