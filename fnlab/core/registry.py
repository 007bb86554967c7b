"""Registries: declarative name -> class tables with ``ParamSpec``s, shared by samplers, losses, datasets
and posteriors.

Pattern after cleanlab's issue-manager factory: every name has an :class:`Entry` and an unknown name
raises a ``ValueError`` that lists the valid ones. An entry is *declared* with the dotted path of its
class (``"fnlab.samplers.fne:FNESampler"``), its human labels and its parameter specs, so names, labels
and specs are read without importing the class (nor torch): the class module is imported on the first
:meth:`Registry.get` / :meth:`Registry.build`. Classes made at run time (tests, plug-ins) register with
the :meth:`Registry.register` decorator instead, which builds their entry from the class.

This module imports nothing but the standard library.

Example:
    >>> reg = Registry("widget")
    >>> _ = reg.declare("plain", "fractions:Fraction", label="A fraction",
    ...                 params=(ParamSpec("kind", "exact", help="how exact", choices=("exact", "rough")),))
    >>> reg.available(), reg.entry("plain").label, reg.param_specs("plain")[0].choices
    (['plain'], 'A fraction', ('exact', 'rough'))
    >>> reg.get("plain").__name__
    'Fraction'
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Entry", "ParamSpec", "Registry"]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a sampler, loss, estimator or dataset, for the CLI's checks and the app's widgets.

    A parameter is numeric (``low``/``high`` give a sensible slider range; ``integer`` for counts) or a
    string out of ``choices`` (a radio or select box in the app).

    Attributes:
        name: keyword argument name.
        default: default value (``None`` when ``optional`` and off by default).
        low, high: a sensible slider range (numeric parameters).
        help: one line for the user.
        integer: whether the value is an integer.
        optional: whether ``None`` (off) is a valid value.
        choices: the valid strings of a string parameter (``None``: numeric).
        label: a human name with its unit, for the app (default: the name with spaces).
        choice_labels: a human name per choice, in the order of ``choices``.
        flag: whether ``fnlab train`` offers it as a named flag (``--tau``) besides ``-p tau=...``.
        variant: a choice parameter whose values the app's playground and the benchmark tables show as
            separate methods (FNE's ``mode``: ``fne · paper`` next to ``fne · calibrated``).
        when: the parameter matters only when these choice parameters hold these values
            (``(("mode", "paper"),)``); the playground hides it otherwise.
        training_only: the parameter acts only during training (the playground hides it).
    """

    name: str
    default: Any
    low: float | None = None
    high: float | None = None
    help: str = ""
    integer: bool = False
    optional: bool = False
    choices: tuple[str, ...] | None = None
    label: str = ""
    choice_labels: tuple[str, ...] = ()
    flag: bool = False
    variant: bool = False
    when: tuple[tuple[str, str | tuple[str, ...]], ...] = ()
    training_only: bool = False

    def __post_init__(self) -> None:
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
            if self.default not in self.choices:
                raise ValueError(f"ParamSpec {self.name!r}: default {self.default!r} is not one of {self.choices}")
            if self.choice_labels and len(self.choice_labels) != len(self.choices):
                raise ValueError(f"ParamSpec {self.name!r}: one label per choice expected")
        elif self.low is None or self.high is None:
            raise ValueError(f"ParamSpec {self.name!r}: a numeric parameter needs low and high")
        if self.variant and self.choices is None:
            raise ValueError(f"ParamSpec {self.name!r}: only a choice parameter can be a variant")

    @property
    def kind(self) -> str:
        """``"choice"``, ``"int"`` or ``"float"``."""
        return "choice" if self.choices is not None else ("int" if self.integer else "float")

    @property
    def title(self) -> str:
        """The label, or the name with spaces."""
        return self.label or self.name.replace("_", " ")

    def choice_label(self, value: str) -> str:
        """The human name of one of the ``choices``."""
        if self.choices and self.choice_labels and value in self.choices:
            return self.choice_labels[self.choices.index(value)]
        return str(value)

    def applies(self, params: Mapping[str, Any]) -> bool:
        """Whether the parameter matters under ``params`` (its ``when`` conditions hold: each names a parameter and
        the value it must have, or a tuple of the values it may have)."""
        return all(params.get(key) in value if isinstance(value, tuple) else params.get(key) == value
                   for key, value in self.when)


@dataclass(frozen=True)
class Entry:
    """What a registry knows about one name without importing its class.

    Attributes:
        name: the registered name.
        target: ``"package.module:ClassName"`` (imported on first use), or ``""`` for a class registered
            at run time.
        label: a human name for the app (``"Hardest (VSE++ max violation)"``).
        short: a short name for tables (``"hardest (VSE++)"``).
        summary: one line for listings (``fnlab data list``, help texts).
        params: the parameter specs.
        meta: kind-specific facts, documented by each registry (samplers: ``loss``, ``playground``, ...).
    """

    name: str
    target: str = ""
    label: str = ""
    short: str = ""
    summary: str = ""
    params: tuple[ParamSpec, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"entry {self.name!r}: a parameter is declared twice ({names})")

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def short_title(self) -> str:
        return self.short or self.name

    def variants(self) -> list[tuple[str, dict[str, Any]]]:
        """``[(suffix, fixed params)]``: one per value of the entry's ``variant`` parameter, or ``[("", {})]``."""
        for p in self.params:
            if p.variant:
                return [(str(v), {p.name: v}) for v in p.choices or ()]
        return [("", {})]


class Registry(Generic[T]):
    """A name -> :class:`Entry` table whose classes are imported on first use (module docstring).

    Args:
        kind: what the table holds, for messages (``"sampler"``).
        bind: set ``name`` and ``PARAMS`` on a class when it is loaded or registered (samplers, losses).
    """

    def __init__(self, kind: str, *, bind: bool = True) -> None:
        self.kind = kind
        self.bind = bind
        self._entries: dict[str, Entry] = {}
        self._classes: dict[str, Any] = {}

    # ------------------------------------------------------------------ declaring
    def declare(self, name: str, target: str, **fields: Any) -> Entry:
        """Declare ``name`` with its class path and what is known without importing it (:class:`Entry`)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is declared twice")
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target must read 'package.module:Name', got {target!r}")
        entry = Entry(name, target, **fields)
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: bind a declared entry's class (its module says ``@register("fne")``), or register
        a class made at run time (its entry is built from the class: ``PARAMS``, first docstring line)."""
        def deco(cls: T) -> T:
            entry = self._entries.get(name)
            if entry is None:
                doc = (inspect.getdoc(cls) or "").split("\n", 1)[0]
                entry = Entry(name, "", summary=doc, params=tuple(getattr(cls, "PARAMS", ())))
                self._entries[name] = entry
            elif name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._bind(name, cls)
            return cls

        return deco

    def _bind(self, name: str, cls: Any) -> None:
        entry = self._entries[name]
        if self.bind:
            if entry.target and "PARAMS" in vars(cls):
                raise TypeError(f"{self.kind} {name!r}: declare its parameters in the registry entry, not in "
                                f"{cls.__name__}.PARAMS (the entry is read without importing the class)")
            cls.name = name
            if entry.target:
                cls.PARAMS = entry.params
        self._classes[name] = cls

    # ------------------------------------------------------------------ reading
    def available(self) -> list[str]:
        """The names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """Every entry, in declaration order."""
        return list(self._entries.values())

    def entry(self, name: str) -> Entry:
        """The entry of ``name`` (no import).

        Raises:
            ValueError: unknown name (the message lists the valid names).
        """
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.available())}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Any:
        """The class of ``name``, imported on first use."""
        entry = self.entry(name)
        if name not in self._classes:
            module, _, attr = entry.target.partition(":")
            cls = getattr(importlib.import_module(module), attr)
            if name not in self._classes:  # its module did not say @register(name)
                self._bind(name, cls)
        return self._classes[name]

    def build(self, name: str, **params: Any) -> Any:
        """An instance of ``name`` with keyword parameters.

        Raises:
            ValueError: unknown name or unknown parameter (the message lists the valid ones).
        """
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
        """The parameter specs of ``name`` (no import for a declared entry)."""
        return list(self.entry(name).params)
