"""make init: the file edits that turn a clone of the template into a project of its own (tools/init/init-project
runs this in a python container, then re-locks and formats).

    init_project.py check NAME               exits 2 with the reason when NAME cannot be the project's name
    init_project.py apply NAME keep|drop     renames the project; with drop, removes the example apps

Standard library only.
"""

from __future__ import annotations

import keyword
import re
import shutil
import sys
from pathlib import Path

ROOT = Path.cwd()
TEMPLATE_NAME = "django-celery-stack"
EXAMPLE_APPS = ("logs", "calc", "heartbeat")
# The template's own CI, which a project started from it does not run (it has .github/workflows/ci.yml).
TEMPLATE_ONLY = (".ci",)
# A block that belongs to the example apps starts and ends with a comment line of its own, in the file's syntax:
# `# >>> example apps` (Python, TOML, YAML, shell), `{# >>> example apps #}`, `<!-- >>> example apps -->`.
MARKER = re.compile(r"^\s*(?:#|\{#|<!--)\s*(>>>|<<<) example apps\b")
TEXT_SUFFIXES = {".py", ".html", ".md", ".toml", ".yml", ".yaml", ".ini", ".cfg", ".txt", ".conf", ".example", ""}
SKIPPED_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", "staticfiles"}
SKIPPED_DIRS |= {"bench-results", "chaos-results", "backups"}  # what the stack writes, not source
THIS_DIR = Path(__file__).resolve().parent  # tools/init, which speaks of the markers without being marked


def name_problem(name: str) -> str | None:
    """Why `name` cannot be the project's name, or None. It must be a Python package name, since the project's
    own code may be importable under it, and one that imports nothing else by that name."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        return "use lowercase letters, digits and underscores, starting with a letter (a Python package name)"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "it is a Python keyword"
    if name in sys.stdlib_module_names:
        return "it is the name of a module of Python's standard library"
    taken = {path.name for path in (ROOT / "app").iterdir() if (path / "__init__.py").exists()}
    taken |= {"django", "celery", "kombu", "gevent", "redis", "psycopg2", "flower", "environ", "gunicorn", "app"}
    if name in taken:
        return "the project already has a package or a dependency by that name"
    return None


def text_files() -> list[Path]:
    found = []
    for path in sorted(ROOT.rglob("*")):
        if any(part in SKIPPED_DIRS for part in path.relative_to(ROOT).parts) or not path.is_file():
            continue
        if path.resolve().parent == THIS_DIR:
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in {"Makefile", "Dockerfile"}:
            try:
                path.read_text()
            except UnicodeDecodeError:
                continue
            found.append(path)
    return found


def without_example_blocks(text: str, path: Path) -> str:
    kept, inside = [], False
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = MARKER.match(line)
        if marker and marker.group(1) == ">>>":
            if inside:
                raise SystemExit(f"{path}:{number}: a block of the example apps starts inside another")
            inside = True
        elif marker:
            if not inside:
                raise SystemExit(f"{path}:{number}: a block of the example apps ends that never started")
            inside = False
        elif not inside:
            kept.append(line)
    if inside:
        raise SystemExit(f"{path}: a block of the example apps never ends")
    return "".join(kept)


def rename(name: str) -> None:
    # Compose project, image, stack and Kubernetes names: a DNS label, so "my_shop" becomes "my-shop" there.
    label = name.replace("_", "-")
    changed = 0
    for path in text_files():
        if path.name == "uv.lock":
            continue  # locked again by `uv lock`, from the renamed pyproject.toml
        text = path.read_text()
        if TEMPLATE_NAME in text:
            path.write_text(text.replace(TEMPLATE_NAME, label))
            changed += 1
    readme = ROOT / "README.md"
    lines = readme.read_text().splitlines(keepends=True)
    lines[0] = f"# {name}\n"
    readme.write_text("".join(lines))
    print(f"init: named the project {name} ({changed} files; compose, images and Kubernetes use {label})")


def drop_examples() -> None:
    for app in EXAMPLE_APPS:
        shutil.rmtree(ROOT / "app" / app)
    edited = []
    for path in text_files():
        text = path.read_text()
        if any(MARKER.match(line) for line in text.splitlines()):
            path.write_text(without_example_blocks(text, path))
            edited.append(str(path.relative_to(ROOT)))
    print(f"init: removed the example apps ({', '.join(EXAMPLE_APPS)}) and their parts of: {', '.join(edited)}")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("check", "apply"):
        print(__doc__, file=sys.stderr)
        return 2
    name = argv[1]
    problem = name_problem(name)
    if problem:
        print(f"init: NAME={name!r} cannot be the project's name: {problem}", file=sys.stderr)
        return 2
    if argv[0] == "check":
        return 0
    examples = argv[2] if len(argv) > 2 else "keep"
    if examples not in ("keep", "drop"):
        print(f"init: EXAMPLES={examples!r} must be keep or drop", file=sys.stderr)
        return 2
    if TEMPLATE_NAME not in (ROOT / "pyproject.toml").read_text():
        print("init: this project has been initialised already (pyproject.toml has its own name)", file=sys.stderr)
        return 2
    for path in TEMPLATE_ONLY:
        shutil.rmtree(ROOT / path, ignore_errors=True)
    if examples == "drop":
        drop_examples()
    rename(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
