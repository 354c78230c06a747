"""Trait normalisation, as Hull's connector did it, and the merge rule for traits (with per-leaf times)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

RENAMED = {"firstname": "first_name", "lastname": "last_name", "createdat": "created_at"}
DROPPED = {"id", "external_id", "guest_id", "uniqToken", "visitToken"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_traits(traits: dict[str, Any]) -> dict[str, Any]:
    """Rename firstname/lastname/createdat (any case), drop id-like keys and null values.

    Nested objects (address, company) are kept nested as they came.
    """
    normalized: dict[str, Any] = {}
    for key, value in traits.items():
        if value is None or key in DROPPED:
            continue
        normalized[RENAMED.get(key.lower(), key)] = _without_nulls(value) if isinstance(value, dict) else value
    return normalized


def _without_nulls(traits: dict[str, Any]) -> dict[str, Any]:
    return {k: _without_nulls(v) if isinstance(v, dict) else v for k, v in traits.items() if v is not None}


def valid_email(value: Any) -> str | None:
    if isinstance(value, str) and _EMAIL.match(value.strip()):
        return value.strip().lower()
    return None


# --- Trait times ---------------------------------------------------------------------------
#
# `trait_times` maps a trait's path to the time it was observed. A path is the trait's keys joined
# with "/", each key escaped as in a JSON Pointer ("~" -> "~0", then "/" -> "~1"): a top-level key
# "plan" is "plan", {"address": {"city": ...}} is "address/city". A time counts for the subtree at
# its path: a leaf without a time of its own has the time of its nearest ancestor that has one (a
# leaf time equal to that inherited time is not stored), and on a dict a time says that nothing
# older belongs under it (a value set then replaced the subtree). Times written before leaves had
# times of their own are top-level ones, and keep that meaning. "<path>/~" (never a path: "~" is
# always escaped in one) is when an empty dict was last seen at <path>, if nothing under it is newer.
#
# Each leaf (a value that is not a dict, or an empty dict) is merged on its own, so that calls
# applied in any order end as if applied in time order:
# - a leaf observed at `at` loses to a newer time at its path or at any ancestor of it;
# - a value that is not a dict, where the current value is a dict with a newer time under it (a
#   newer call set a dict there), loses too, but still ends what is older than it in that dict;
# - otherwise it is set, with whatever dicts its path needs: a missing or non-dict ancestor becomes
#   a dict and keeps its time, as the time before which nothing belongs under it; the times under
#   the leaf are dropped and the leaf gets `at`;
# - an empty dict makes its path a dict too (merging with a dict already there), at "<path>/~".
# Two different calls at the very same time: the one applied last wins.

Path = tuple[str, ...]


class _Cutoff:
    def __repr__(self) -> str:
        return "CUTOFF"


CUTOFF = _Cutoff()
"""Value of a leaf (path, CUTOFF, at): nothing older than `at` counts under `path` (a time on a dict)."""

_MISSING = object()
_STRAY_TILDE = re.compile(r"~(?![01])")
_DICT_SEEN = "/~"


def encode_path(keys: Sequence[str]) -> str:
    """("address", "city") -> "address/city"; any key round-trips, "~" and "/" included."""
    return "/".join(key.replace("~", "~0").replace("/", "~1") for key in keys)


def decode_path(encoded: str) -> Path | None:
    """The keys of an encoded path; None for a string encode_path never produces (a stray "~")."""
    keys = []
    for segment in encoded.split("/"):
        if _STRAY_TILDE.search(segment):
            return None
        keys.append(segment.replace("~1", "/").replace("~0", "~"))
    return tuple(keys)


def trait_leaves(traits: dict[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every leaf of nested traits with its path: values that are not dicts, and empty dicts."""
    for key, value in traits.items():
        if isinstance(value, dict) and value:
            yield from trait_leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def timed_leaves(traits: dict[str, Any], trait_times: dict[str, str], default: str) -> list[tuple[Path, Any, str]]:
    """What merge_leaves needs to merge these traits into others, each part at the time it was seen.

    Every leaf at the time of its path or nearest ancestor (else `default`), an empty dict for
    every "<path>/~" time, and a CUTOFF for every dict that has a time of its own.
    """
    times = dict(trait_times)
    _upgrade_legacy_keys(traits, times)
    leaves = [(path, value, _time_of(times, path) or default) for path, value in trait_leaves(traits)]
    for key, at in times.items():
        seen = key.endswith(_DICT_SEEN)
        path = decode_path(key[: -len(_DICT_SEEN)] if seen else key)
        if path is not None and isinstance(_get(traits, path), dict):
            leaves.append((path, {} if seen else CUTOFF, at))
    return leaves


def merge_traits(traits: dict[str, Any], trait_times: dict[str, str], incoming: dict[str, Any], at: str) -> bool:
    """Apply `incoming` (observed at time `at`) in place, leaf by leaf; a leaf set by a newer call is kept.

    Nested traits merge: {"address": {"zip": ...}} keeps the address's city. Returns whether any
    value changed (times may change without: the newest observation of a value is recorded).
    """
    return merge_leaves(traits, trait_times, [(path, value, at) for path, value in trait_leaves(incoming)])


def merge_leaves(traits: dict[str, Any], trait_times: dict[str, str], leaves: Iterable[tuple[Path, Any, str]]) -> bool:
    """Apply (path, value or CUTOFF, observed at) in place by the rules above; returns whether a value changed.

    CUTOFFs apply after the values, so that they also mark the dicts the values create.
    """
    _upgrade_legacy_keys(traits, trait_times)
    leaves = list(leaves)
    changed = False
    for path, value, at in [leaf for leaf in leaves if leaf[1] is not CUTOFF] + [
        leaf for leaf in leaves if leaf[1] is CUTOFF
    ]:
        changed = _merge_leaf(traits, trait_times, path, value, at) or changed
    return changed


def _merge_leaf(traits: dict[str, Any], times: dict[str, str], path: Path, value: Any, at: str) -> bool:
    encoded = [encode_path(path[:depth]) for depth in range(1, len(path) + 1)]
    if any(times.get(key, "") > at for key in encoded):
        return False  # a newer call set this value, or replaced a subtree holding it
    current = _get(traits, path)
    if value is CUTOFF:
        return isinstance(current, dict) and _cut(times, current, path, encoded, at)
    if isinstance(value, dict):
        return _merge_empty_dict(traits, times, path, encoded, at)
    if isinstance(current, dict):
        below = encoded[-1] + "/"
        under = [key for key in times if key.startswith(below)]
        if any(times[key] > at for key in under):
            return _cut(times, current, path, encoded, at)  # a newer call set a dict here
        for key in under:
            del times[key]
    return _set_leaf(traits, times, path, encoded, value, current, at)


def _merge_empty_dict(traits: dict[str, Any], times: dict[str, str], path: Path, encoded: list[str], at: str) -> bool:
    """An empty object makes its path an object (merging with one there); its time is kept as
    `<path>/~` unless something at or under the path is as new."""
    below = encoded[-1] + "/"
    changed = _make_dicts(traits, path)
    if not any(times.get(key, "") >= at for key in encoded) and not any(
        t >= at for key, t in times.items() if key.startswith(below)
    ):
        times[encoded[-1] + _DICT_SEEN] = at  # for a value older than `at` at this path to lose
    return changed


def _set_leaf(
    traits: dict[str, Any], times: dict[str, str], path: Path, encoded: list[str], value: Any, current: Any, at: str
) -> bool:
    """Set a scalar (or list) leaf: its missing parents become objects, and it gets time `at`."""
    changed = _make_dicts(traits, path[:-1])
    if current is _MISSING or not _same(current, value):
        _get(traits, path[:-1])[path[-1]] = copy.deepcopy(value) if isinstance(value, list) else value
        changed = True
    _set_time(times, encoded, at)
    return changed


def _same(a: Any, b: Any) -> bool:
    """Equal as stored values: true is not 1, but 1.0 is 1 (the table keeps a number, not its type)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _make_dicts(traits: dict[str, Any], path: Path) -> bool:
    """Make every value along `path` a dict (a missing or other value becomes {}); whether one changed."""
    changed = False
    node = traits
    for key in path:
        if not isinstance(node.get(key), dict):
            node[key] = {}
            changed = True
        node = node[key]
    return changed


def _cut(times: dict[str, str], subtree: dict[str, Any], path: Path, encoded: list[str], at: str) -> bool:
    """Drop what is older than `at` under `path` and give `path` that time; whether a value went."""
    removed = _drop_older(times, subtree, path, at)
    for key in [key for key in times if key.startswith(encoded[-1] + "/") and times[key] < at]:
        del times[key]
    _set_time(times, encoded, at)
    return removed


def _drop_older(times: dict[str, str], node: dict[str, Any], path: Path, at: str) -> bool:
    removed = False
    for key, value in list(node.items()):
        child = (*path, key)
        seen = times.get(encode_path(child) + _DICT_SEEN, "")
        if isinstance(value, dict) and value:
            removed = _drop_older(times, value, child, at) or removed
            if not value and seen < at:
                del node[key]
        elif max(_time_of(times, child), seen if isinstance(value, dict) else "") < at:
            del node[key]
            removed = True
    return removed


def _set_time(times: dict[str, str], encoded: list[str], at: str) -> None:
    """times[path] = at, unless `path` inherits that very time from an ancestor."""
    if next((times[key] for key in reversed(encoded[:-1]) if key in times), None) == at:
        times.pop(encoded[-1], None)
    else:
        times[encoded[-1]] = at


def _time_of(times: dict[str, str], path: Path) -> str:
    """The time at `path` or at its nearest ancestor; "" when none has one."""
    for depth in range(len(path), 0, -1):
        at = times.get(encode_path(path[:depth]))
        if at is not None:
            return at
    return ""


def _get(traits: dict[str, Any], path: Path) -> Any:
    node: Any = traits
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _upgrade_legacy_keys(traits: dict[str, Any], times: dict[str, str]) -> None:
    """Rename a pre-path time key of a top-level trait whose name holds "/" or "~" to its encoding.

    Such a key names a top-level trait without being the path of a stored value (or the "/~" key
    of a stored dict), as every key written since is; a key that is both keeps its path meaning.
    """
    for key in list(times):
        encoded = encode_path((key,))
        if encoded == key or key not in traits or encoded in times:
            continue
        if key.endswith(_DICT_SEEN):
            path = decode_path(key[: -len(_DICT_SEEN)])
            written_since = path is not None and isinstance(_get(traits, path), dict)
        else:
            path = decode_path(key)
            written_since = path is not None and _get(traits, path) is not _MISSING
        if not written_since:
            times[encoded] = times.pop(key)
