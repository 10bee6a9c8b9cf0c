"""aiortc without PyAV, for the command line's process.

aiortc imports PyAV (FFmpeg's bindings) at module level, for its media tracks and codecs:
~35 ms of a receiver's start (``python -X importtime``), on the way to its first byte, spent
on code that a data channel never runs. :func:`install`, called by the CLI before anything
imports aiortc, puts a stand-in for ``av`` and its submodules on ``sys.meta_path``: every name
asked of it is an inert placeholder class, and making one raises, so any use of media fails
loudly instead of quietly doing something else.

Only the CLI installs it: its process holds nothing but p2pshare, whereas a program using
p2pshare as a library may also use aiortc's media. It is installed only when PyAV is not
loaded yet and the installed aiortc is one whose import was tested with it
(:data:`TESTED_AIORTC`), read from its ``dist-info`` directory without importing it.
``P2PSHARE_MEDIA_STAND_IN=0`` (``Tuning.media_stand_in``) leaves it out.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

TESTED_AIORTC = ("1.16.0",)
"""aiortc versions whose import, and whose data channels, were tested with the stand-in."""

_ROOT = "av"


class MediaUnavailable(RuntimeError):
    pass


class _PlaceholderMeta(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = _placeholder(f"{cls.__qualname__}.{name}", cls.__module__)
        type.__setattr__(cls, name, value)  # the same placeholder next time
        return value

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise MediaUnavailable(
            f"{cls.__module__}.{cls.__qualname__}: PyAV is not loaded in p2pshare's command "
            "line (data channels only)"
        )


def _placeholder(qualname: str, module: str) -> type:
    placeholder = _PlaceholderMeta(qualname.rpartition(".")[2], (), {"__module__": module})
    placeholder.__qualname__ = qualname
    return placeholder


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = _placeholder(name, self.__name__)
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Any = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == _ROOT or fullname.startswith(_ROOT + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _aiortc_version() -> str | None:
    """The installed aiortc's version, from its dist-info directory (None if not found)."""
    spec = importlib.util.find_spec("aiortc")
    if spec is None or not spec.submodule_search_locations:
        return None
    site = Path(next(iter(spec.submodule_search_locations))).parent
    for version in TESTED_AIORTC:
        if (site / f"aiortc-{version}.dist-info").is_dir():
            return version
    return None


def install(wanted: bool = True) -> bool:
    """Put the stand-in in place if ``wanted`` and it is safe to (see the module's
    docstring); whether it is in place."""
    if any(isinstance(finder, _Finder) for finder in sys.meta_path):
        return True
    if not wanted or _ROOT in sys.modules:
        return False
    if "aiortc" in sys.modules or _aiortc_version() is None:
        return False
    sys.meta_path.insert(0, _Finder())
    return True


def installed() -> bool:
    """Whether ``av`` in this process is the stand-in."""
    return isinstance(sys.modules.get(_ROOT), _StandInModule)
