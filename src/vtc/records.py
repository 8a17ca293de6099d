"""Light frozen records: typed, immutable value objects for the AST and the resolved recipe.

``@record`` gives what ``@dataclass(frozen=True)`` gives (fields from the annotations, defaults, equality, hashing,
a repr, immutability) without generating code: dataclasses compiles six functions a class, about 1 ms each class on
these machines, and `vtc check` has 0.2 s to answer in total.
"""

from __future__ import annotations


def record(cls):
    """Make ``cls`` a frozen record: its annotated attributes are its fields, in order (a class attribute of the
    same name is the default); instances are immutable, equal when of the same class with equal fields, hashable.
    """
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
    label = cls.__name__

    def __init__(self, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError(f"{label} takes {len(names)} fields, got {len(args)}")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names or key in values:
                raise TypeError(f"{label}: unexpected or repeated field {key!r}")
            values[key] = value
        for name in names:
            if name not in values and name not in defaults:
                raise TypeError(f"{label}: missing field {name!r}")
            object.__setattr__(self, name, values[name] if name in values else defaults[name])

    def __setattr__(self, name, value):
        raise AttributeError(f"{label} is frozen: cannot set {name!r}")

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    def __hash__(self):
        return hash((label, *(getattr(self, n) for n in names)))

    def __repr__(self):
        return f"{label}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

    def __delattr__(self, name):
        raise AttributeError(f"{label} is frozen: cannot delete {name!r}")

    for method in (__init__, __setattr__, __delattr__, __eq__, __hash__, __repr__):
        method.__qualname__ = f"{label}.{method.__name__}"
        setattr(cls, method.__name__, method)
    cls.__match_args__ = names
    cls.node_fields = names
    return cls


def fields(value) -> tuple[str, ...]:
    """The field names of a record (empty for anything else)."""
    return getattr(type(value), "node_fields", ())
