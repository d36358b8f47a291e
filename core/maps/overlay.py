"""The running map set: the map files overlaid by the latest stored revision of each map.

A map changed through the management API is stored with a revision number (core.store.mapversions). Its
latest revision replaces the file's map of the same name, or adds a map no file has. The overlay is then
validated as a whole, exactly as the files alone are (MapSet.checked): a stored revision is one more source
of maps, not a way around the rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.maps.loader import LoadedMap, LoadResult, load_map_text
from core.maps.problems import Problem


@dataclass(frozen=True)
class StoredMap:
    """One stored revision of a map: what the overlay needs of it."""

    name: str  # the map it is a revision of (the name its text must carry)
    revision: int
    text: str  # the map's JSON, as it was sent


def stored_origin(revision: int) -> str:
    """Where a stored map comes from, as problems and the API name it (a file map says its path)."""
    return f"stored revision {revision}"


def overlay(files: LoadResult, stored: Iterable[StoredMap]) -> LoadResult:
    """The files' maps with each stored map in place of the file of its name (in the files' order), then the
    stored maps no file has (by name). Every problem of either is kept: a broken file stays a problem even when a
    stored revision replaces its map, so what runs never depends on a file nobody can read."""
    loaded: dict[str, LoadedMap | None] = {}
    problems: list[Problem] = []
    for item in sorted(stored, key=lambda each: each.name):
        origin = stored_origin(item.revision)
        found, found_problems = load_map_text(item.text, origin, name=item.name, revision=item.revision)
        problems += found_problems
        if found is not None and found.map.name != item.name:
            problems.append(Problem(origin, item.name, "name", f"the stored text names map {found.map.name!r}, "
                                                               f"not {item.name!r}"))
            found = None
        loaded[item.name] = found
    maps = [loaded.get(each.map.name) if each.map.name in loaded else each for each in files.maps]
    maps += [each for name, each in loaded.items() if name not in {m.map.name for m in files.maps}]
    return LoadResult([each for each in maps if each is not None], files.problems + problems)
