"""Table maps: model, loading, validation, transforms, filters, keys, projection, dependencies.

Pure: nothing here does I/O beyond reading map files. The curated surface below is what the
rest of the engine uses; the modules hold the details.
"""

from core.maps.catalog import Column, EntitySchema
from core.maps.filters import FilterError, evaluate, filter_fields, parse_filter, render
from core.maps.graph import SyncPlan, plan_sync
from core.maps.hashing import stable_hash
from core.maps.keys import KeyRef, decode_key, encode_key, order_key, record_key
from core.maps.loader import LoadedMap, LoadResult, load_maps
from core.maps.mapset import MapSet, set_problems
from core.maps.model import Direction, FieldMapping, Lookup, Side, TableMap
from core.maps.overlay import StoredMap, overlay
from core.maps.problems import MapDefinitionError, Problem
from core.maps.project import ProjectionError, project
from core.maps.validation import check_metadata, validate_maps
from core.maps.values import MapValueError

__all__ = [
    "Column",
    "Direction",
    "EntitySchema",
    "FieldMapping",
    "FilterError",
    "KeyRef",
    "LoadResult",
    "LoadedMap",
    "Lookup",
    "MapDefinitionError",
    "MapSet",
    "MapValueError",
    "Problem",
    "ProjectionError",
    "Side",
    "StoredMap",
    "SyncPlan",
    "TableMap",
    "check_metadata",
    "decode_key",
    "encode_key",
    "evaluate",
    "filter_fields",
    "load_maps",
    "order_key",
    "overlay",
    "parse_filter",
    "plan_sync",
    "project",
    "record_key",
    "render",
    "set_problems",
    "stable_hash",
    "validate_maps",
]
