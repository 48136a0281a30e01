"""docs/project.md's code map against the tree: every room (a module, or a folder of modules) is
listed once, with the rooms it imports exactly as its code imports them."""
import ast
import re
from pathlib import Path
from typing import Dict, Set

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "spacy_uniner"


def room(path: Path) -> str:
    """`name.py` for a module of the package, `name/` for a module inside one of its folders."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] + "/" if len(parts) > 1 else parts[0]


def as_room(name: str) -> str:
    return name + "/" if (PACKAGE / name).is_dir() else name + ".py"


def imported_rooms(path: Path) -> Set[str]:
    """The package's rooms that `path` imports from, itself left out."""
    folder = list(path.relative_to(PACKAGE).parent.parts)
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            module = folder[: len(folder) - node.level + 1] + (node.module.split(".") if node.module else [])
        elif (node.module or "").split(".")[0] == "spacy_uniner":
            module = node.module.split(".")[1:]
        else:
            continue
        rooms.update(as_room(name) for name in ([module[0]] if module else [alias.name for alias in node.names]))
    return rooms - {room(path)}


def code_rooms() -> Dict[str, Set[str]]:
    rooms: Dict[str, Set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name.startswith("__"):
            continue  # the package's own __init__ and __main__ are entry points, not rooms
        rooms.setdefault(room(path), set()).update(imported_rooms(path))
    return rooms


def documented_rooms() -> Dict[str, Set[str]]:
    text = (ROOT / "docs" / "project.md").read_text(encoding="utf8")
    rows = re.findall(r"^\| `([\w/.]+)` \| .+ \| (.*) \|$", text, flags=re.M)
    listed: Dict[str, Set[str]] = {}
    for name, imports in rows:
        assert name not in listed, f"{name} is listed twice in docs/project.md's code map"
        listed[name] = set(re.findall(r"`([\w/.]+)`", imports))
    return listed


def test_the_code_map_lists_every_room_with_what_it_imports():
    code, documented = code_rooms(), documented_rooms()
    assert sorted(documented) == sorted(code), "docs/project.md's code map and the tree name other rooms"
    for name, imports in code.items():
        assert documented[name] == imports, f"{name} imports {sorted(imports)}; docs/project.md says {sorted(documented[name])}"
