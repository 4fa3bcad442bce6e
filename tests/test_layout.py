"""The suite's layout: what tests share lives in ``tests/support``; no module imports a test
module or a conftest."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(tree: ast.Module) -> list[str]:
    """Every module ``tree`` imports, and every name it imports from a module, dotted."""
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            modules.append(base)
            modules += [f"{base}.{alias.name}".replace("..", ".") for alias in node.names]
    return modules


def is_test_module_or_conftest(module: str) -> bool:
    return any(part.startswith("test_") or part == "conftest" for part in module.split("."))


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    imports = {
        path.relative_to(TESTS.parent): imported_modules(ast.parse(path.read_text()))
        for path in sorted(TESTS.rglob("*.py"))
    }
    assert "tests.support.factories" in imports[Path("tests/conftest.py")]  # imports are read

    offending = [
        f"{path}: {module}"
        for path, modules in imports.items()
        for module in modules
        if is_test_module_or_conftest(module)
    ]

    assert offending == [], "import it from tests/support instead:\n" + "\n".join(offending)
