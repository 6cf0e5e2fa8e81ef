"""The setting machinery: a declared setting, its parsers, and ``resolve`` (argument → env → default).

A settings class (``RunnerConfig``, ``HostConfig``) declares each setting once, as a class
attribute made by ``setting``: its environment variable(s), parser and documentation. The README
table, ``doctor`` and the error messages all read that declaration.

The runner imports this at every plugin start, so it stays cheap to import: no ``dataclasses``
(its class machinery costs milliseconds), no ``typing`` at run time, stdlib modules that
``logging`` loads anyway.
"""

from __future__ import annotations

import logging
import os

from otel_plugin_logs.config.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any, ClassVar, Final, Literal, TypeVar

    _T = TypeVar("_T")
    _ConfigT = TypeVar("_ConfigT", bound="Settings")
    Source = Literal["argument", "env", "default"]

PREFIX: Final = "OTEL_PLUGIN_LOGS_"


class Setting:
    """One declared setting: where it is read from, how it is parsed, what it does."""

    __slots__ = ("accepts", "default", "doc", "envs", "name", "parse")

    def __init__(
        self, default: object, envs: tuple[str, ...], parse: Callable[[str], Any], doc: str, accepts: str
    ) -> None:
        self.name = ""  # set by the class that declares it
        self.default = default
        self.envs = envs
        self.parse = parse
        self.doc = doc
        self.accepts = accepts

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name


def setting(
    default: _T, envs: str | tuple[str, ...], parse: Callable[[str], Any], doc: str, accepts: str
) -> _T:
    """Declare a setting; typed as its value, which an instance holds under the same name."""
    names = (envs,) if isinstance(envs, str) else envs
    return Setting(default, names, parse, doc, accepts)  # type: ignore[return-value]


class Settings:
    """Base of a frozen settings class: one value per ``Setting`` declared on the subclass."""

    _declared: ClassVar[tuple[Setting, ...]] = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        found: dict[str, Setting] = {}
        for klass in reversed(cls.__mro__):  # a subclass keeps its bases' settings, in their order
            found.update((name, value) for name, value in vars(klass).items() if isinstance(value, Setting))
        cls._declared = tuple(found.values())

    def __init__(self, **values: Any) -> None:
        for spec in self._declared:
            object.__setattr__(self, spec.name, values.pop(spec.name, spec.default))
        if values:
            raise TypeError(f"{type(self).__name__} has no setting(s) {', '.join(sorted(values))}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, spec.name) for spec in self._declared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Settings)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{spec.name}={getattr(self, spec.name)!r}" for spec in self._declared)
        return f"{type(self).__name__}({shown})"


def declared(cls: type[Settings]) -> Iterator[Setting]:
    """The settings of ``cls``, in declaration order."""
    return iter(cls._declared)


class Resolved:
    """Where each setting's value came from, for ``doctor`` and error messages."""

    __slots__ = ("sources",)

    def __init__(self, sources: Mapping[str, tuple[Source, str]]) -> None:
        self.sources = sources  # field -> (source, env var or "")

    def __repr__(self) -> str:
        return f"Resolved(sources={self.sources!r})"


def resolve(
    cls: type[_ConfigT], overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[_ConfigT, Resolved]:
    """Build a config: an explicit argument wins, then the first set env var, then the default.

    An invalid environment value raises ``ConfigError`` naming the variable, so a typo fails
    at start-up instead of silently falling back.
    """
    env = os.environ if environ is None else environ
    given = dict(overrides or {})
    unknown = set(given) - {spec.name for spec in cls._declared}
    if unknown:
        raise ConfigError(f"unknown setting(s) for {cls.__name__}: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    sources: dict[str, tuple[Source, str]] = {}
    for spec in cls._declared:
        if given.get(spec.name) is not None:
            values[spec.name] = given[spec.name]
            sources[spec.name] = ("argument", "")
            continue
        sources[spec.name] = ("default", "")
        for name in spec.envs:
            raw = env.get(name)
            if raw is None or not raw.strip():  # the OTel spec reads an empty variable as unset
                continue
            try:
                values[spec.name] = spec.parse(raw)
            except (ValueError, TypeError):
                raise ConfigError(f"{name}={raw!r} is invalid: expected {spec.accepts}") from None
            sources[spec.name] = ("env", name)
            break
    return cls(**values), Resolved(sources)


# Parsers. Each raises ValueError with what it accepts; ``resolve`` adds the variable name.


def int_range(low: int, high: int = 2**40) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip().replace("_", ""))
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def float_range(low: float, high: float = 2.0**63) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:  # also rejects NaN and infinity
            raise ValueError
        return value

    return parse


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError


def parse_level(text: str) -> int:
    stripped = text.strip()
    if stripped.lstrip("-").isdigit():
        value = int(stripped)
        if value < 0:
            raise ValueError
        return value
    level = logging.getLevelName(stripped.upper())
    if not isinstance(level, int):
        raise ValueError
    return level


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_path(text: str) -> str:
    if not text.strip():
        raise ValueError
    return os.path.expanduser(text.strip())


MIB: Final = 1024 * 1024
# Upper bounds keep a typo (or 1e20) from overflowing a deadline later: a day, and 1 TiB.
DAY_MILLIS: Final = 86_400_000
POSITIVE: Final = int_range(1, 2**40)
NON_NEGATIVE: Final = int_range(0, 2**40)
MILLIS: Final = int_range(0, DAY_MILLIS)
POSITIVE_MILLIS: Final = int_range(1, DAY_MILLIS)
