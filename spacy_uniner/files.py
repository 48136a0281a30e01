"""Every output the package writes goes through here: to a temporary file (or folder) beside its
target, renamed onto it only once it is whole, so a killed run or a failed step leaves the earlier
output as it was. Output paths are checked before the work that fills them. JSON inputs are read
here too, a file that does not parse named in the error."""
import fcntl
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import srsly

from .errors import UserError

PathLike = Union[str, Path]
# A command's input paths by what they are ("the student", "gold-train"); None: not given.
Inputs = Optional[Mapping[str, Optional[PathLike]]]
UMASK_LOCK = threading.Lock()


def check_output_file(path: PathLike, inputs: Inputs = None) -> Path:
    """`path` as a file to write: refused up front, before any work is done, when it is a folder,
    its folder cannot be written, or it is one of the command's `inputs` (see `check_apart`)."""
    path = Path(path)
    check_apart(path, inputs)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give the path of a file to write")
    return writable_parent(path)


def check_output_files(paths: Iterable[Optional[PathLike]], inputs: Inputs = None) -> None:
    """`check_output_file` for each of a command's outputs that is given (None: not asked for)."""
    for path in paths:
        if path is not None:
            check_output_file(path, inputs)


def check_output_folder(path: PathLike, inputs: Inputs = None, replaced: bool = True) -> Path:
    """`path` as a folder to write: refused up front when it is a file, its parent cannot be
    written, or it is one of the command's `inputs` or inside one; and, when it is `replaced` whole
    (not a working folder such as a run's checkpoints), when it holds one (see `check_apart`)."""
    path = Path(path)
    check_apart(path, inputs, around=replaced)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file: give the path of a folder to write")
    return writable_parent(path)


def check_apart(output: PathLike, inputs: Inputs, around: bool = True) -> None:
    """A command never writes over one of its own inputs, into one (a pipeline folder that
    `spacy package` would ship), or, with `around`, around one (an output folder replaced whole).
    `inputs` names each input path by what it is; None stands for an input not given."""
    target = Path(output).resolve()
    for what, path in (inputs or {}).items():
        if path is None:
            continue
        source = Path(path).resolve()
        if target == source:
            where = f"is the {what}"
        elif source in target.parents:
            where = f"is inside the {what}"
        elif around and target in source.parents:
            where = f"holds the {what}"
        else:
            continue
        raise UserError(f"the output {output} {where} {path}: give an output apart from the command's inputs")


def writable_parent(path: Path) -> Path:
    """`path`, once the nearest folder above it that exists is found writable. The folders between
    are made only when the output is written (`make_parents`), so that a command refused or failing
    before then leaves none behind."""
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise PermissionError(f"cannot write {path}: its folder {existing} is not writable")
    return path


def make_parents(path: Path) -> List[Path]:
    """Make the folders above `path` that do not exist yet; the ones made, deepest first."""
    made = []
    folder = path.parent
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    return made


def current_umask() -> int:
    """The process's umask: the modes an output gets are those `open` and `mkdir` would give it, not
    the private ones of `mkstemp` and `mkdtemp` (0600, 0700), which the rename would keep. Read from
    /proc where Linux shows it; elsewhere os.umask can only be read by setting it, one thread at a
    time."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration):
        with UMASK_LOCK:
            mask = os.umask(0o077)
            os.umask(mask)
        return mask


@contextmanager
def atomic_file(path: PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` when the block ends without
    an error, and is removed when it raises, with the folders made for it."""
    path = check_output_file(path)
    made = make_parents(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    partial = Path(name)
    partial.chmod(0o666 & ~current_umask())
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
        remove_empty(made)


@contextmanager
def atomic_folder(path: PathLike) -> Iterator[Path]:
    """A temporary folder beside `path` to fill; it takes the place of `path` (an earlier folder
    there is removed only then) when the block ends without an error, and is removed when it raises,
    with the folders made for it."""
    path = check_output_folder(path)
    made = make_parents(path)
    partial = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    partial.chmod(0o777 & ~current_umask())
    try:
        yield partial
        if path.exists():
            earlier = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, earlier / path.name)
            os.replace(partial, path)
            shutil.rmtree(earlier)
        else:
            os.replace(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        remove_empty(made)


@contextmanager
def exclusive(path: PathLike) -> Iterator[None]:
    """One writer at a time for `path` (an output file, a cache folder): while the block runs, a lock
    file beside it (`.NAME.lock`) is held and names its holder; a second writer is refused, naming
    that holder. The lock (flock) ends with its process, so a killed run leaves none in the way; the
    file is removed when the block ends."""
    path = Path(path)
    lock = writable_parent(path.with_name(f".{path.name}.lock"))
    made = make_parents(lock)
    while True:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 1024).decode("utf8", errors="replace").strip() or "a process"
            os.close(handle)
            remove_empty(made)
            raise BlockingIOError(f"{path} is being written by another run ({holder}; its lock is {lock}): wait for it to end") from None
        try:
            if os.stat(lock).st_ino == os.fstat(handle).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(handle)  # locked a file that a run ending meanwhile removed: lock the one there now
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode("utf8"))
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(handle)
        remove_empty(made)


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove those of `folders` (deepest first) that a failed run left empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty: an output is in it
            return


def drop_torn_last_line(path: PathLike) -> None:
    """Remove a last line that ends without a newline: what a process killed while appending to a
    line-per-record file leaves. The next record then starts a line of its own."""
    path = Path(path)
    data = path.read_bytes() if path.is_file() else b""
    if data and not data.endswith(b"\n"):
        with atomic_file(path) as partial:
            partial.write_bytes(data[: data.rfind(b"\n") + 1])


def read_json(path: PathLike) -> Any:
    """The JSON value of a file; one that is empty, cut short or not JSON is an error naming it."""
    try:
        return srsly.read_json(path)
    except ValueError as error:
        raise UserError(f"{path} is not a JSON file ({error})") from None


def read_jsonl_lines(path: PathLike) -> Iterator[Tuple[int, Any]]:
    """(line number, record) of each line of a .jsonl file (blank lines skipped); a line that is
    not JSON is an error naming the file and the line."""
    with Path(path).open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            try:
                line = raw.decode("utf8")
            except UnicodeDecodeError as error:
                raise UserError(f"{path} line {number} is not UTF-8 text ({error})") from None
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as error:
                raise UserError(f"{path} line {number} is not JSON ({error}): {line[:100]!r}") from None


def write_json(path: PathLike, data: Any) -> None:
    with atomic_file(path) as partial:
        srsly.write_json(partial, data)


def write_jsonl(path: PathLike, lines: Iterable[Any]) -> None:
    with atomic_file(path) as partial:
        srsly.write_jsonl(partial, lines)


def write_text(path: PathLike, text: str) -> None:
    with atomic_file(path) as partial:
        partial.write_text(text, encoding="utf8")


def path_from(folder: PathLike, path: PathLike) -> str:
    """`path` as a file written into `folder` names it: relative to the folder (so a project moved
    whole still finds it, and a pipeline shared or packaged names no one's home folder), absolute
    where no relative path leads there (another drive)."""
    target = Path(path).resolve()
    try:
        return Path(os.path.relpath(target, Path(folder).resolve())).as_posix()
    except ValueError:
        return str(target)
