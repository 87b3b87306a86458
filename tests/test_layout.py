"""The code's shape, kept true: no import cycle in Python or TypeScript, and the build pipeline
never imports the verification tools (webllm_build/verify/ reads the pipeline's outputs)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from webllm_build.paths import PACKAGE_DIR, WEB_DIR


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _python_imports() -> dict[str, set[str]]:
    """Each module's imports of the package, at module level (imports inside functions are the
    deliberate way to defer a heavy or optional dependency, and cannot form a load-time cycle)."""
    modules = {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def _typescript_imports() -> dict[str, set[str]]:
    sources = {
        p.relative_to(WEB_DIR / "src").with_suffix("").as_posix(): p for p in (WEB_DIR / "src").rglob("*.ts")
    }
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        found = set()
        # Type-only imports vanish at run time but still tie modules together: count them too.
        for spec in re.findall(
            r'^(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"', path.read_text(), re.M | re.S
        ):
            target = (Path(name).parent / spec).as_posix()
            target = str(Path(target)).replace("\\", "/")
            parts: list[str] = []
            for part in target.split("/"):
                if part == "..":
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            resolved = "/".join(parts)
            if resolved in sources:
                found.add(resolved)
            elif f"{resolved}/index" in sources:
                found.add(f"{resolved}/index")
        graph[name] = found
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_python_import_cycle():
    graph = _python_imports()
    assert len(graph) > 40 and graph["webllm_build.site"]  # the scan sees the package
    assert _cycles(graph) == []


def test_the_build_pipeline_never_imports_the_verification_tools():
    for module, imports in _python_imports().items():
        if not module.startswith(("webllm_build.verify", "webllm_build.cli")):
            assert not [i for i in imports if i.startswith("webllm_build.verify")], module


def test_no_typescript_import_cycle():
    graph = _typescript_imports()
    assert len(graph) > 10 and graph["engine"]
    assert _cycles(graph) == []
