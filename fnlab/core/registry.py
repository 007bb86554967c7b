"""Registries: a name -> class table with ``ParamSpec``s, shared by samplers, losses and posteriors.

Pattern after cleanlab's issue-manager factory: classes register themselves by name and an
unknown name raises a ``ValueError`` that lists the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ParamSpec:
    """One numeric parameter of a sampler or loss, for the app's sliders.

    Attributes:
        name: keyword argument name.
        default: default value (``None`` when ``optional`` and off by default).
        low, high: a sensible slider range.
        help: one line for the user.
        integer: whether the value is an integer.
        optional: whether ``None`` (off) is a valid value.
    """

    name: str
    default: float | int | None
    low: float
    high: float
    help: str
    integer: bool = False
    optional: bool = False


class Registry(Generic[T]):
    """A name -> class table shared by samplers and losses."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return deco

    def available(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.available())}"
            ) from None

    def build(self, name: str, **params: Any) -> T:
        cls = self.get(name)
        accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ValueError(
                f"{self.kind} {name!r} got unknown parameter(s) {', '.join(unknown)}; "
                f"valid parameters: {', '.join(accepted)}"
            )
        return cls(**params)

    def param_specs(self, name: str) -> list[ParamSpec]:
        return list(getattr(self.get(name), "PARAMS", ()))
