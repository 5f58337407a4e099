"""Issue 12's bar for the code's layout, checked on every run: no module of ``src/fastidx`` over
500 lines, no function over 60 lines (from its ``def`` to its last line, docstring included), no
internal function taking more than 8 parameters (``self``/``cls`` not counted).

Internal: any function but the public API, which is the public names of public modules plus
:data:`PUBLIC_IN_PRIVATE_MODULES`. The public API keeps its parameters on purpose: they are the
Keras-compatible keyword options (README, "Layout of the code"). Whatever is still over the bar
is listed in :data:`ALLOWED` with its reason, and an entry that is no longer needed fails too, so
the list only shrinks.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fastidx"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8

#: Public API defined in private modules (re-exported by a public one): keyword options by design.
PUBLIC_IN_PRIVATE_MODULES = {
    "datasets/_loader.py": {"Dataset.load_data", "Dataset.load", "Dataset.iter_batches"},
}

#: What is still over the bar, each with its reason: ``(file, what)`` where ``what`` is
#: ``"module"`` or a function's qualified name.
ALLOWED: dict[tuple[str, str], str] = {}  # nothing is over the bar today


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> int:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    if in_class and names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + bool(args.vararg) + bool(args.kwarg)


def _functions(tree: ast.Module):
    """``(qualified name, node, in a class)`` of every function, nested ones included."""
    def walk(node, prefix, in_class):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child, in_class
                yield from walk(child, f"{prefix}{child.name}.<locals>.", False)
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.", True)
            else:
                yield from walk(child, prefix, in_class)

    yield from walk(tree, "", False)


def _is_public(relative: str, qualname: str) -> bool:
    if qualname in PUBLIC_IN_PRIVATE_MODULES.get(relative, ()):
        return True
    if "<locals>" in qualname:
        return False
    parts = relative.removesuffix(".py").split("/")
    names = [p for p in parts if p != "__init__"] + qualname.split(".")
    return not any(name.startswith("_") and not name.startswith("__") for name in names)


def violations(root: Path = SRC) -> dict[tuple[str, str], str]:
    """Everything over the bar under ``root``: ``{(file, "module" or qualified name): why}``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            found[relative, "module"] = f"{lines} lines"
        for qualname, node, in_class in _functions(ast.parse(text)):
            length = node.end_lineno - node.lineno + 1
            count = _parameters(node, in_class)
            why = []
            if length > MAX_FUNCTION_LINES:
                why.append(f"{length} lines")
            if count > MAX_PARAMETERS and not _is_public(relative, qualname):
                why.append(f"{count} parameters")
            if why:
                found[relative, qualname] = ", ".join(why)
    return found


def test_no_module_function_or_parameter_list_over_the_bar():
    over = {key: why for key, why in violations().items() if key not in ALLOWED}
    assert not over, "over issue 12's bar (split it, or add it to ALLOWED with a reason): " + "; ".join(
        f"{file}: {what} ({why})" for (file, what), why in sorted(over.items()))


def test_the_allow_list_holds_only_what_is_still_over():
    stale = sorted(set(ALLOWED) - set(violations()))
    assert not stale, f"no longer over the bar, remove from ALLOWED: {stale}"


@pytest.mark.parametrize("source, expected", [
    ("x = 1\n" * 501, {("m.py", "module"): "501 lines"}),
    ("def f():\n" + "    pass\n" * 60, {("m.py", "f"): "61 lines"}),
    ("def _f(a, b, c, d, e, f, g, h, i):\n    pass\n", {("m.py", "_f"): "9 parameters"}),
    ("class _C:\n    def g(self, a, b, c, d, e, f, g, h, *i):\n        pass\n",
     {("m.py", "_C.g"): "9 parameters"}),
    ("class _C:\n    def g(self, a, b, c, d, e, f, g, h):\n        pass\n", {}),
    ("def f(a, b, c, d, e, f, g, h, i):\n    pass\n", {}),  # public: keyword options allowed
    ("def f():\n    def g(a, b, c, d, e, f, g, h, i):\n        pass\n",
     {("m.py", "f.<locals>.g"): "9 parameters"}),
])
def test_the_guard_sees_what_it_should(tmp_path, source, expected):
    (tmp_path / "m.py").write_text(source)
    assert violations(tmp_path) == expected


#: What the command line may use that is not public API, and why.
CLI_PRIVATE_ALLOWED = {
    ("_paths", "cache_root"): "where the cache directory is, to print it and list downloads",
    ("_atomic", "atomic_write"): "the command's own output files (pictures) written whole",
}


def cli_private_imports(cli: Path = SRC / "cli") -> set[tuple[str, str]]:
    """``(module, name)`` of every private name the command line imports from the rest of fastidx
    (``from .._idx import IDXReader``, ``from .. import _fetch``, ``from ..datasets._loader import X``)."""
    found = set()
    for path in sorted(cli.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.level < 2:
                continue  # the cli's own modules, or outside fastidx
            module = node.module or ""
            for alias in node.names:
                if any(part.startswith("_") and not part.startswith("__") for part in module.split(".")):
                    found.add((module, alias.name))
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.add((module, alias.name))
    return found


def test_the_command_line_uses_the_public_api():
    private = {key: "" for key in cli_private_imports() if key not in CLI_PRIVATE_ALLOWED}
    assert not private, f"cli/ imports private names: {sorted(private)}"
    assert set(CLI_PRIVATE_ALLOWED) <= cli_private_imports(), "remove unused CLI_PRIVATE_ALLOWED entries"


def test_the_cli_guard_sees_private_imports(tmp_path):
    (tmp_path / "m.py").write_text("from .. import datasets, _fetch\nfrom .._idx import IDXReader\n"
                                   "from ..datasets._loader import Dataset\nfrom . import parser\n"
                                   "from ..cache import parse_size\n")
    assert cli_private_imports(tmp_path) == {("", "_fetch"), ("_idx", "IDXReader"),
                                             ("datasets._loader", "Dataset")}
