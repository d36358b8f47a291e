"""Maps changed through the management API: the running set, a change stored as the next revision once the whole
set with it passes validation, and a map's revisions, listed and restored.

The running set is the map files overlaid by the latest stored revision of each map (core.maps.overlay). A change
is checked exactly as a reload would load it (the files as they are now, every other map's latest revision, this
body), so what is stored is what runs; a stale or concurrent writer is refused instead of overwriting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from core.errors import BadInput
from core.maps import (
    KeyRef,
    MapDefinitionError,
    MapSet,
    Problem,
    StoredMap,
    TableMap,
    load_maps,
    project,
    set_problems,
)
from core.maps.convert import ProjectDirection
from core.maps.loader import load_map_text
from core.maps.overlay import overlay, stored_origin
from core.store.mapversions import MapRevision, MapVersionStore, split_body
from core.sync.catchup import UnknownMap


class BadMapBody(BadInput):
    """The body is not a map of this name at all (not JSON, not an object, another name); `field` says where."""


class StaleRevision(Exception):
    """The caller changed a revision that is no longer the latest (If-Match)."""

    def __init__(self, map_name: str, expected: int, latest: int) -> None:
        super().__init__(f"map {map_name!r} is at revision {latest}, not {expected}: someone changed it meanwhile; "
                         "read it again and send your change against the latest revision")
        self.map, self.expected, self.latest = map_name, expected, latest


class RevisionNotFound(LookupError):
    def __init__(self, map_name: str, revision: int) -> None:
        super().__init__(f"map {map_name!r} has no stored revision {revision}")
        self.map, self.revision = map_name, revision


class MapVersions:
    """The maps of `paths` and their stored revisions (`store`)."""

    def __init__(self, store: MapVersionStore, paths: Sequence[str]) -> None:
        self.store = store
        self.paths = list(paths)
        self._read: dict[tuple[str, int], StoredMap] = {}  # a revision never changes: each is read once

    async def latest(self) -> dict[str, int]:
        """The latest stored revision of each map (keys only: cheap enough to ask every check)."""
        return await self.store.latest_revisions()

    async def stored(self, latest: Mapping[str, int]) -> list[StoredMap]:
        """The bodies of the `latest` revisions, each read from the table once per process."""
        out: list[StoredMap] = []
        for name, revision in sorted(latest.items()):
            if (name, revision) not in self._read:
                found = await self.store.get(name, revision)
                if found is None:  # listed a moment ago, so it exists; a row removed by hand is simply not there
                    continue
                self._read[name, revision] = found.stored()
            out.append(self._read[name, revision])
        return out

    async def load(self, latest: Mapping[str, int] | None = None) -> MapSet:
        """The running set as it stands: the files now, overlaid by the `latest` revisions (read when not given),
        validated; MapDefinitionError with every problem when the set is invalid."""
        stored = await self.stored(await self.latest() if latest is None else latest)
        return await asyncio.to_thread(MapSet.load, self.paths, stored)  # reads the files

    async def change(self, name: str, text: str, *, by: str, reason: str = "",
                     expected: int | None = None) -> MapRevision:
        """Store `text` as the next revision of map `name` (a new map when neither a file nor a revision has it).

        Refused before anything is stored: BodyTooLarge, BadMapBody, StaleRevision when `expected` is not the
        latest revision (0: none stored yet), MapDefinitionError when the set with it would not pass validation;
        RevisionTaken when another writer stored the same revision first.
        """
        split_body(text)  # a row must hold it: say so before reading anything
        _check_names(name, text)
        latest = await self.latest()
        current = latest.get(name, 0)
        if expected is not None and expected != current:
            raise StaleRevision(name, expected, current)
        candidate = StoredMap(name, current + 1, text)
        own, overlaid = await self._among(candidate, latest)
        if own:  # not a map at all: its own problems, not the set's ("map 'x' does not exist" in its users)
            raise MapDefinitionError(own)
        maps = await asyncio.to_thread(MapSet.load, self.paths, overlaid)
        stored = await self.store.add(name, candidate.revision, text, version=maps[name].version, by=by,
                                      reason=reason)
        self._read[name, stored.revision] = candidate
        return stored

    async def _among(self, candidate: StoredMap, latest: Mapping[str, int]) -> tuple[list[Problem], list[StoredMap]]:
        """`candidate`'s own problems when it is no valid map, else the stored revisions with it in its map's place."""
        _, own = load_map_text(candidate.text, stored_origin(candidate.revision), name=candidate.name,
                               revision=candidate.revision)
        if own:
            return own, []
        return [], [*(each for each in await self.stored(latest) if each.name != candidate.name), candidate]

    async def check(self, name: str, text: str) -> list[Problem]:
        """A draft of map `name` checked as a change would be, storing nothing: every problem (errors and
        warnings) of the set with it; none when it would be accepted. BadMapBody when it is no map body."""
        _check_names(name, text)
        latest = await self.latest()
        own, overlaid = await self._among(StoredMap(name, latest.get(name, 0) + 1, text), latest)
        if own:
            return own
        return await asyncio.to_thread(lambda: set_problems(overlay(load_maps(self.paths), overlaid)))

    async def restore(self, name: str, revision: int, *, by: str, reason: str = "",
                      expected: int | None = None) -> MapRevision:
        """Store revision `revision`'s body again, as the next revision (validated as a change is)."""
        earlier = await self.revision(name, revision)
        assert earlier.body is not None
        return await self.change(name, earlier.body, by=by, reason=reason or f"restore of revision {revision}",
                                 expected=expected)

    async def history(self, name: str) -> list[MapRevision]:
        """A map's revisions, newest first, without their bodies."""
        return await self.store.history(name)

    async def revision(self, name: str, revision: int) -> MapRevision:
        """One revision with its body; RevisionNotFound when there is none."""
        found = await self.store.get(name, revision)
        if found is None:
            raise RevisionNotFound(name, revision)
        return found


def _check_names(name: str, text: str) -> None:
    """The body is a JSON object carrying the map's name: a PUT to one map cannot change another."""
    try:
        raw = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise BadMapBody("body", f"the body is not JSON: {error.msg} (line {error.lineno}, column {error.colno})"
                         ) from None
    if not isinstance(raw, dict):
        raise BadMapBody("body", "the body must be a map: a JSON object")
    if raw.get("name") != name:
        raise BadMapBody("name", f"the map's name is {raw.get('name')!r}, but it is sent to map {name!r}: "
                                 "they must be the same")


def preview(maps: Mapping[str, TableMap], name: str, direction: ProjectDirection, record: Mapping[str, Any],
            draft: TableMap | None = None) -> dict[str, Any]:
    """The values map `name` (or a `draft` of it) would write for a sample `record` read on the other side:
    pure, nothing read or written. A lookup shows as the key it would bind ({"map", "side", "key"}).
    MapValueError (ProjectionError) names the field a value fails on."""
    running = {**maps, name: draft} if draft is not None else maps
    if name not in running:
        raise UnknownMap(name)
    out = project(running[name], direction, record, maps=running)
    return {column: ({"map": value.map, "side": value.side, "key": dict(value.values)}
                     if isinstance(value, KeyRef) else value) for column, value in out.items()}
