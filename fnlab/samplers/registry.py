"""Sampler registry: a decorator, ``available()``, ``build()`` and ``param_specs()``."""

from __future__ import annotations

from typing import Any

from fnlab.core.registry import ParamSpec, Registry

__all__ = ["ParamSpec", "Registry", "SAMPLERS", "register", "available", "build", "param_specs"]

SAMPLERS: Registry = Registry("sampler")
register = SAMPLERS.register


def available() -> list[str]:
    """Names of the registered samplers, sorted."""
    return SAMPLERS.available()


def build(name: str, **params: Any):
    """Build the sampler ``name`` with keyword parameters.

    Raises:
        ValueError: unknown name (the message lists the valid names) or unknown parameter.
    """
    return SAMPLERS.build(name, **params)


def param_specs(name: str) -> list[ParamSpec]:
    """The numeric parameters of sampler ``name`` (``ParamSpec`` each), for sliders."""
    return SAMPLERS.param_specs(name)
