"""kassa/ is the ground floor: nothing in it (migrations included) imports the floors above it."""

import ast
from pathlib import Path

KASSA = Path(__file__).resolve().parent.parent / "kassa"
ABOVE = {"activities", "workflows", "api", "acquirer", "worker", "cli"}


def imports_from_above(path: Path) -> list[str]:
    """Every `import X` / `from X import …` in the file whose top-level package is one of ABOVE,
    wherever it stands (a function body's import counts as much as the module's)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"line {node.lineno}: {name}" for name in names if name.split(".")[0] in ABOVE]
    return found


def test_kassa_imports_nothing_above_it() -> None:
    files = sorted(KASSA.rglob("*.py"))
    assert files, f"no Python files under {KASSA}"
    offences = [
        f"{path.relative_to(KASSA.parent)} {found}"
        for path in files
        for found in imports_from_above(path)
    ]
    assert not offences, "kassa/ imports from the floors above it:\n" + "\n".join(offences)
