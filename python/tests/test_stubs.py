"""The type stubs name what the package has, with the same parameters."""

import ast
import inspect
import os

import pytest

import shmq
from shmq import _shmq

HERE = os.path.join(os.path.dirname(shmq.__file__))


def stub_items(filename):
    tree = ast.parse(open(os.path.join(HERE, filename)).read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    yield node.name, item
        elif isinstance(node, ast.FunctionDef):
            yield None, node
        elif isinstance(node, ast.AnnAssign):
            yield None, node.target.id


def params(fn: ast.FunctionDef):
    a = fn.args
    return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]


@pytest.mark.parametrize("module,filename", [(shmq, "__init__.pyi"), (_shmq, "_shmq.pyi")])
def test_every_stubbed_name_exists_with_its_parameters(module, filename):
    for cls, item in stub_items(filename):
        if isinstance(item, str):
            assert hasattr(module, item), item
            continue
        owner = getattr(module, cls) if cls else module
        assert hasattr(owner, item.name), f"{cls}.{item.name}"
        obj = getattr(owner, item.name)
        if item.name.startswith("__") or isinstance(obj, property) or not callable(obj):
            continue
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        runtime = [p for p in sig.parameters if p not in ("self", "cls", "args", "kwargs")]
        assert params(item) == runtime, f"{cls}.{item.name}: stub {params(item)} vs runtime {runtime}"


def test_public_names_are_stubbed():
    stubbed = {item if isinstance(item, str) else item.name for cls, item in stub_items("__init__.pyi") if cls is None}
    stubbed |= {"Queue", "JoinableQueue", "SimpleQueue", "Connection", "Full", "Empty", "BufferTooShort"}
    assert set(shmq.__all__) <= stubbed
