"""srt-slurm recipe files -> concrete variants (SPEC.md section 3), each with its source lines.

Forms: a plain recipe; an override file (``base`` + ``override_<suffix>`` + ``zip_override_<group>``,
``base`` alone never runs); a ``sweep:`` file (also inside an override variant). A selector
after the file name (``file.yaml:override_x``, ``:zip_override_g``, ``:zip_override_g[3]``,
``:base``, or a glob over the override keys) picks variants as ``srtctl apply -f`` does.

Every variant is a ``Located``: its merged data plus, for every key, the line of the file it
came from (a base key's line, or the override's), so errors point at what the user wrote.
Deviation from srtctl, on purpose: other top-level keys next to ``base`` are errors (srtctl
ignores them silently).
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ixhpc.yamlmodel import ConfigError, Located, Path_, found, load_yaml

WHAT = "an srt-slurm recipe (a mapping with name, model, resources, ...)"
_ZIP_INDEX = re.compile(r"^(zip_override_.+)\[(\d+)\]$")


@dataclass(frozen=True)
class Variant:
    """One concrete deployment's data before validation."""

    doc: Located     # merged data; lines point into the file
    selector: str    # "" (plain), "override_x", "zip_override_g[3]", plus "+sweep(...)" parts
    origin: Path_    # where in the file the variant is defined (for its own errors)


def split_selector(spec: str | Path) -> tuple[str, str | None]:
    """``file.yaml:selector`` -> (file, selector); a path that exists as written has none."""
    text = str(spec)
    if Path(text).exists() or ":" not in text:
        return text, None
    file, _, selector = text.rpartition(":")
    return file, selector


def read_variants(spec: str | Path) -> tuple[Located, list[Variant], list[str]]:
    """The file's document, its variants and the located problems of the expansion itself."""
    file, selector = split_selector(spec)
    doc = load_yaml(file, WHAT, duplicates="last")  # srtctl reads YAML with PyYAML
    data = {k: v for k, v in doc.data.items() if k != "lock"}  # srtctl's lockfile section
    errors: list[str] = []
    if "base" in data:
        variants = _override_variants(doc, data, selector, errors)
    else:
        if selector is not None:
            errors.append(doc.error((), f"expected no selector for a plain recipe (selectors pick "
                                    f"variants of a file with `base:`), found ':{selector}'"))
        variants = [Variant(Located(doc.file, data, dict(doc.lines)), "", ())]
    out: list[Variant] = []
    for v in variants:
        out.extend(_sweep(v, errors))
    return doc, out, errors


# --------------------------------------------------------------------------------------
# Override files.


def merge(base: Any, override: Any) -> Any:
    """SPEC 3.2: maps merge recursively (base keys first, new keys appended), a list or scalar
    replaces, ``null`` deletes the key."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return copy.deepcopy(override)
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif key in out:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _rebase(lines: Mapping[Path_, int], src: Path_, dst: Path_ = ()) -> dict[Path_, int]:
    n = len(src)
    return {dst + p[n:]: line for p, line in lines.items() if p[:n] == src}


def _override_variants(doc: Located, data: dict[Any, Any], selector: str | None,
                       errors: list[str]) -> list[Variant]:
    base = data["base"]
    if not isinstance(base, dict):
        errors.append(doc.error(("base",), f"expected a mapping (a complete recipe), found {found(base)}"))
        return []
    base_lines = _rebase(doc.lines, ("base",))
    base_name = base.get("name")
    overrides: dict[str, Any] = {}
    zips: dict[str, Any] = {}
    for key, value in data.items():
        if key == "base":
            continue
        if isinstance(key, str) and key.startswith("zip_override_") and len(key) > 13:
            zips[key] = value
        elif isinstance(key, str) and key.startswith("override_") and len(key) > 9:
            overrides[key] = value
        else:
            errors.append(doc.error((key,), "expected only `base`, `override_<suffix>` and "
                                    "`zip_override_<group>` next to `base`, found unknown key "
                                    f"{key!r}"))
            continue
        if not isinstance(value, dict):
            errors.append(doc.error((key,), f"expected a mapping merged into base, found {found(value)}"))
            overrides.pop(key, None)
            zips.pop(key, None)

    if selector == "base":
        return [Variant(Located(doc.file, base, base_lines), "base", ("base",))]
    wanted_zip_index: int | None = None
    if selector is not None:
        m = _ZIP_INDEX.match(selector)
        if m:
            selector, wanted_zip_index = m.group(1), int(m.group(2))
        chosen = [k for k in [*overrides, *zips] if fnmatch.fnmatchcase(k, selector)]
        if not chosen:
            names = ", ".join(["base", *sorted(overrides), *sorted(zips)])
            errors.append(doc.error((), f"expected a selector naming one of {names}, found "
                                    f"':{selector}'"))
            return []
        overrides = {k: v for k, v in overrides.items() if k in chosen}
        zips = {k: v for k, v in zips.items() if k in chosen}

    variants = []
    for key in sorted(overrides):
        ovr = overrides[key]
        merged = merge(base, ovr)
        if "name" not in ovr:
            merged["name"] = f"{base_name}_{key[len('override_'):]}"
        lines = {**base_lines, **_rebase(doc.lines, (key,))}
        variants.append(Variant(Located(doc.file, merged, lines), key, (key,)))
    for key in sorted(zips):
        for i, (ovr, ovr_lines) in enumerate(_zip_items(doc, key, zips[key], errors)):
            if wanted_zip_index is not None and i != wanted_zip_index:
                continue
            group = key[len("zip_override_"):]
            merged = merge(base, ovr)
            if "name" not in ovr:
                merged["name"] = f"{base_name}_{group}_{i}"
            variants.append(Variant(Located(doc.file, merged, {**base_lines, **ovr_lines}),
                                    f"{key}[{i}]", (key,)))
        if wanted_zip_index is not None and zips[key] and wanted_zip_index >= _zip_len(zips[key]):
            errors.append(doc.error((key,), f"expected an index below {_zip_len(zips[key])}, found "
                                    f"[{wanted_zip_index}]"))
    return variants


def _axes(value: Any, path: Path_) -> Iterator[tuple[Path_, list[Any]]]:
    """Every list inside the map (through maps only): the zip axes."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _axes(v, path + (k,))
    elif isinstance(value, list):
        yield path, value


def _zip_len(group: dict[Any, Any]) -> int:
    return max((len(v) for _, v in _axes(group, ())), default=1)


def _zip_items(doc: Located, key: str, group: dict[Any, Any],
               errors: list[str]) -> list[tuple[dict[Any, Any], dict[Path_, int]]]:
    axes = list(_axes(group, ()))
    bad = [p for p, v in axes if not v]
    for p in bad:
        errors.append(doc.error((key, *p), "expected a non-empty list (a zip axis), found []"))
    lengths = sorted({len(v) for _, v in axes if len(v) > 1})
    if len(lengths) > 1:
        detail = ", ".join(f"{'.'.join(map(str, p))}: {len(v)}" for p, v in axes if len(v) > 1)
        errors.append(doc.error((key,), f"expected zip axes of one length (or length 1), found "
                                f"{detail}"))
    if bad or len(lengths) > 1:
        return []
    n = lengths[0] if lengths else 1
    name_is_list = isinstance(group.get("name"), list)
    out = []
    for i in range(n):
        lines: dict[Path_, int] = {}
        value = _pick(doc, group, (key,), (), i, lines)
        if not name_is_list:
            value.pop("name", None)  # a scalar name is ignored (SPEC 3.2)
        out.append((value, lines))
    return out


def _pick(doc: Located, value: Any, src: Path_, dst: Path_, i: int, lines: dict[Path_, int]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if (src + (k,)) in doc.lines:
                lines[dst + (k,)] = doc.lines[src + (k,)]
            out[k] = _pick(doc, v, src + (k,), dst + (k,), i, lines)
        return out
    if isinstance(value, list):
        j = 0 if len(value) == 1 else i
        if (src + (j,)) in doc.lines:
            lines[dst] = doc.lines[src + (j,)]
        lines.update(_rebase(doc.lines, src + (j,), dst))
        return copy.deepcopy(value[j])
    return value


# --------------------------------------------------------------------------------------
# `sweep:` (SPEC 3.3).


def _substitute(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    if isinstance(value, str):
        for p, v in params.items():
            if value == "{" + p + "}" and isinstance(v, list):
                return copy.deepcopy(v)
        for p, v in params.items():
            value = value.replace("{" + p + "}", str(v))
    return value


def _sweep(variant: Variant, errors: list[str]) -> list[Variant]:
    data = variant.doc.data
    if not isinstance(data, dict) or "sweep" not in data:
        return [variant]
    doc, sweep = variant.doc, data["sweep"]
    if not isinstance(sweep, dict) or not sweep:
        errors.append(doc.error(("sweep",), f"expected a mapping of parameters to lists of values, "
                                f"found {found(sweep)}"))
        return []
    bad = [k for k, v in sweep.items() if not isinstance(v, list) or not v]
    for k in bad:
        errors.append(doc.error(("sweep", k), f"expected a non-empty list of values, found "
                                f"{found(sweep[k])}"))
    if bad:
        return []
    rest = {k: v for k, v in data.items() if k != "sweep"}
    keys = list(sweep)
    out = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        params = {str(k): v for k, v in zip(keys, combo)}
        new = _substitute(rest, params)
        suffix = "_".join(f"{k}{v}" for k, v in params.items())
        new["name"] = f"{new.get('name')}_{suffix}"
        tag = "sweep(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")"
        selector = f"{variant.selector}+{tag}" if variant.selector else tag
        out.append(Variant(Located(doc.file, new, doc.lines), selector, variant.origin))
    return out


def raise_if(errors: list[str]) -> None:
    if errors:
        raise ConfigError(errors)
