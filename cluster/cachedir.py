"""Where meshstep keeps what it can read again faster than from its source (the user's cache directory), and what
its two caches share: the switch, the code hash in their keys, atomic writes, and keeping only the recently used.
cluster.cache keeps snapshots' decoded inventories; cluster.live_cache keeps a live cluster's large kinds.

MESHSTEP_CACHE_DIR moves the directory; MESHSTEP_CACHE=off turns both caches off. Deleting it is always safe."""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path

DIR_ENV, SWITCH_ENV = "MESHSTEP_CACHE_DIR", "MESHSTEP_CACHE"


def directory() -> Path:
    """Where entries are kept: MESHSTEP_CACHE_DIR, else the user's cache directory (platformdirs)."""
    if where := os.environ.get(DIR_ENV):
        return Path(where)
    import platformdirs

    return platformdirs.user_cache_path("meshstep") / "inventory"


def off() -> bool:
    """Whether MESHSTEP_CACHE turns the caches off."""
    return os.environ.get(SWITCH_ENV, "").lower() in ("off", "0", "no")


def limits() -> str:
    """The bounds a source is read within (MESHSTEP_MAX_*), as set: an entry made under others is not trusted."""
    return str(sorted((k, v) for k, v in os.environ.items() if k.startswith("MESHSTEP_MAX_")))


@cache
def code(modules: tuple[str, ...]) -> str:
    """The code of these modules of this room (cluster), hashed."""
    here = Path(__file__).parent
    return hashlib.sha256(b"".join((here / m).read_bytes() for m in modules)).hexdigest()


def write(path: Path, data: bytes) -> None:
    """Keep an entry, atomically (a reader never sees half of one); a cache that cannot be written is no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".entry-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return


def used(path: Path, pattern: str, kept: int, beside: str | None = None) -> None:
    """Mark the entry recently used, and delete all but the `kept` most recently used entries matching `pattern`
    (every source read would otherwise leave one behind for good); with `beside`, each deleted entry takes with it
    the entries kept beside it: those named `<its name up to its first dot><beside>`."""
    try:
        os.utime(path)
        old: Iterable[Path] = sorted(path.parent.glob(pattern), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for entry in list(old)[kept:]:
            entry.unlink()
            for other in entry.parent.glob(entry.name.partition(".")[0] + beside) if beside else ():
                other.unlink(missing_ok=True)
    except OSError:
        pass  # a cache that cannot be kept tidy is no error
