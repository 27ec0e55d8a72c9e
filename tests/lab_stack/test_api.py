"""The public surface: exported names and the error family."""

from __future__ import annotations

import builtins
import inspect

import lab_stack
from lab_stack import errors


def test_exported_members() -> None:
    """lab_stack exports exactly its documented API."""
    assert sorted(lab_stack.__all__) == sorted(
        [
            "ComponentStatus",
            "LabError",
            "Settings",
            "Stack",
            "connect",
            "down",
            "get_settings",
            "up",
        ]
    )
    for name in lab_stack.__all__:
        assert hasattr(lab_stack, name)


def test_error_family_is_rooted_documented_and_shadows_nothing() -> None:
    """Every error derives from LabError, has a docstring and appears in the module's tree."""
    classes = [
        obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, Exception)
    ]
    assert {c.__name__ for c in classes} == set(errors.__all__)
    tree = errors.__doc__ or ""
    for cls in classes:
        assert issubclass(cls, errors.LabError), cls
        assert cls.__doc__ and cls.__doc__.strip(), cls
        assert cls.__name__ in tree, f"{cls.__name__} missing from the tree in errors.py"
        assert not hasattr(builtins, cls.__name__), f"{cls.__name__} shadows a builtin"
