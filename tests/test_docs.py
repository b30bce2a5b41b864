"""The docs stay true to the code: every environment variable the settings read is documented
once, the README stays short, relative links lead somewhere, and no doc cites an issue number."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "config" / "settings.py"
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
# The heading in docs/configuration.md whose table lists every variable config/settings.py reads.
SETTINGS_HEADING = "## Settings"
README_MAX_BYTES = 16_000

# django-environ's ``Env`` methods whose first argument is the name of an environment variable.
ENV_READERS = {
    "__call__",
    "bool",
    "bytes",
    "cache",
    "cache_url",
    "db",
    "db_url",
    "dict",
    "email",
    "email_url",
    "float",
    "get_value",
    "int",
    "json",
    "list",
    "path",
    "search_url",
    "str",
    "tuple",
    "url",
}
VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]*)`")


def doc_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


# ----- what the settings read ------------------------------------------------------------------


class _Parents(ast.NodeVisitor):
    def __init__(self) -> None:
        self.parent: dict[ast.AST, ast.AST] = {}

    def generic_visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            self.parent[child] = node
        super().generic_visit(node)


def _env_objects(tree: ast.Module) -> set[str]:
    """Names bound to ``environ.Env(...)`` (usually ``env``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if (isinstance(func, ast.Attribute) and func.attr == "Env") or (
                isinstance(func, ast.Name) and func.id == "Env"
            ):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _is_os_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _variable_argument(node: ast.AST, env_objects: set[str]) -> ast.expr | None:
    """The expression naming the variable when ``node`` reads the environment, else None."""
    if isinstance(node, ast.Subscript) and _is_os_environ(node.value):
        return node.slice
    if not isinstance(node, ast.Call) or not (node.args or node.keywords):
        return None
    func = node.func
    first = node.args[0] if node.args else None
    if isinstance(func, ast.Name) and func.id in env_objects:  # env("NAME")
        return first
    if not isinstance(func, ast.Attribute):
        return None
    owner = func.value
    if isinstance(owner, ast.Name) and owner.id in env_objects and func.attr in ENV_READERS:
        return first or next((k.value for k in node.keywords if k.arg == "var"), None)
    if _is_os_environ(owner) and func.attr in {"get", "setdefault", "pop"}:
        return first
    if isinstance(owner, ast.Name) and owner.id == "os" and func.attr == "getenv":
        return first
    return None


def _constants(node: ast.AST, where: str) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_constants(e, where) for e in node.elts))
    raise AssertionError(f"{where}: cannot tell which environment variable is read")


def _resolve(
    expr: ast.expr, at: ast.AST, tree: ast.Module, parents: dict[ast.AST, ast.AST]
) -> set[str]:
    """The literal variable names ``expr`` (an argument of the read at ``at``) can hold."""
    where = f"config/settings.py line {getattr(at, 'lineno', '?')}"
    if not isinstance(expr, ast.Name):
        return _constants(expr, where)
    name = expr.id
    node: ast.AST | None = at
    while node is not None:
        node = parents.get(node)
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            for gen in node.generators:
                if isinstance(gen.target, ast.Name) and gen.target.id == name:
                    return _constants(gen.iter, where)
        if (
            isinstance(node, ast.For | ast.AsyncFor)
            and isinstance(node.target, ast.Name)
            and node.target.id == name
        ):
            return _constants(node.iter, where)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            params = [a.arg for a in node.args.posonlyargs + node.args.args]
            kwonly = [a.arg for a in node.args.kwonlyargs]
            if name in params or name in kwonly:
                return _call_arguments(node.name, name, params, tree, parents)
    for stmt in tree.body:  # a module-level constant
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in stmt.targets
        ):
            return _constants(stmt.value, where)
    raise AssertionError(f"{where}: cannot tell which environment variable {name} names")


def _call_arguments(
    function: str, param: str, params: list[str], tree: ast.Module, parents: dict[ast.AST, ast.AST]
) -> set[str]:
    """Every value passed for ``param`` where the module calls ``function``."""
    values: set[str] = set()
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            continue
        if call.func.id != function:
            continue
        arg = next((k.value for k in call.keywords if k.arg == param), None)
        if arg is None and param in params and params.index(param) < len(call.args):
            arg = call.args[params.index(param)]
        if arg is not None:
            values |= _resolve(arg, call, tree, parents)
    return values


def settings_variables() -> set[str]:
    tree = ast.parse(SETTINGS.read_text(), filename=str(SETTINGS))
    visitor = _Parents()
    visitor.visit(tree)
    env_objects = _env_objects(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        expr = _variable_argument(node, env_objects)
        if expr is not None:
            found |= _resolve(expr, node, tree, visitor.parent)
    return found


# ----- what the docs say -----------------------------------------------------------------------


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def table_rows(text: str) -> list[str]:
    """The first cell of every body row of every Markdown table in ``text``."""
    lines = _without_code_blocks(text).splitlines()
    cells = []
    for i, line in enumerate(lines):
        if not line.startswith("|") or re.fullmatch(r"\|[\s:|-]+\|?", line.strip()):
            continue
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if re.fullmatch(r"\|[\s:|-]+\|?", following):  # a header row
            continue
        cells.append(line.split("|")[1])
    return cells


def configuration_table_variables() -> list[str]:
    text = CONFIGURATION.read_text()
    start = text.index(SETTINGS_HEADING + "\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return [name for cell in table_rows(section) for name in VARIABLE.findall(cell)]


def test_settings_reader_finds_the_variables_settings_read() -> None:
    # A few the settings read in different ways: a plain call, a loop over names, a helper.
    found = settings_variables()
    assert {"DATABASE_URL", "DB_HOST", "PIPELINE_DELAY_SHIPPING", "SECRET_KEY"} <= found


def test_every_setting_is_in_the_configuration_table_and_nothing_else() -> None:
    read = settings_variables()
    documented = configuration_table_variables()
    missing = sorted(read - set(documented))
    extra = sorted(set(documented) - read)
    twice = sorted({name for name in documented if documented.count(name) > 1})
    assert not missing, f"read by config/settings.py, not in docs/configuration.md: {missing}"
    assert not extra, f"in docs/configuration.md, not read by config/settings.py: {extra}"
    assert not twice, f"listed more than once in docs/configuration.md: {twice}"


def test_settings_are_documented_in_one_table_only() -> None:
    read = settings_variables()
    rows = {
        path.relative_to(ROOT).as_posix(): [
            name for cell in table_rows(path.read_text()) for name in VARIABLE.findall(cell)
        ]
        for path in doc_files()
    }
    elsewhere = {
        doc: sorted(set(names) & read)
        for doc, names in rows.items()
        if doc != "docs/configuration.md" and set(names) & read
    }
    assert not elsewhere, f"settings documented outside docs/configuration.md: {elsewhere}"


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes, at most {README_MAX_BYTES}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in _without_code_blocks(path.read_text()).splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if not match:
            continue
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_to_existing_files(doc: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _without_code_blocks(doc.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        linked = (doc.parent / path_part).resolve() if path_part else doc
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: links to nothing: {broken}"


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_cite_no_issue_numbers(doc: Path) -> None:
    cited = re.findall(r"\bissues? #?\d+", doc.read_text(), flags=re.IGNORECASE)
    assert not cited, f"{doc.relative_to(ROOT)} mentions {cited}"
