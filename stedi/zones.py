"""Zones by role: which tables a reader sees. A reader given a zone sees that zone's tables and
those after it (``landing`` < ``trusted`` < ``curated``), plus any tables named on their own
(``tables``); only a reader without a zone (``all``, the default: the warehouse's engineers) sees the
system tables (run_log, ingest_manifest, quarantine, suppression_list, erasure_log).

The warehouse's own ``stedi.toml`` may set ``zone``/``tables``: then it is a ceiling, which the
environment and the command line may narrow but not widen. Storage permissions enforce the same
split for anyone who reads the files directly (README, "Who sees what").
"""

from __future__ import annotations

from collections.abc import Iterable

from stedi.errors import ConfigError

#: The zones a reader can be limited to, widest first.
ZONE_CHOICES = ("all", "landing", "trusted", "curated")
_ORDER = ("landing", "trusted", "curated")


def visible(zone: str, tables: Iterable[str] = ()) -> list[str]:
    """The tables a reader limited to ``zone`` (plus ``tables``) sees, by name."""
    from stedi.contracts import load_contracts

    contracts = load_contracts()
    if zone not in ZONE_CHOICES:
        raise ConfigError(f"zone must be one of {', '.join(ZONE_CHOICES)}, not {zone!r}")
    if zone == "all":
        return sorted(contracts)
    seen = {n for n, c in contracts.items() if c.zone in _ORDER[_ORDER.index(zone) :]}
    for name in tables:
        if name not in contracts:
            raise ConfigError(f"no table {name!r} to show (tables: {', '.join(sorted(contracts))})")
        if contracts[name].zone == "system":
            raise ConfigError(f"{name} is a system table: only a reader without a zone (zone = \"all\") sees it")
        seen.add(name)
    return sorted(seen)


def check_ceiling(ceiling: dict, zone: str, tables: Iterable[str], source: str) -> None:
    """Refuse a zone wider than the warehouse's settings file (``ceiling``: its zone and tables) allows."""
    if "zone" not in ceiling and "tables" not in ceiling:
        return
    allowed = set(visible(str(ceiling.get("zone", "all")), ceiling.get("tables", ())))
    wanted = set(visible(zone, tables))
    if not wanted <= allowed:
        extra = ", ".join(sorted(wanted - allowed))
        raise ConfigError(
            f"{source} limits its readers to the {ceiling.get('zone', 'all')} zone"
            f"{' and ' + ', '.join(ceiling['tables']) if ceiling.get('tables') else ''}: not {extra}"
        )
