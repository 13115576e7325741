"""Units of length, mass and time (and powers of length), for grading the same quantity written in
other units as the same answer (MathVerse's scorer: "0.5m and 50cm" are consistent).

`parse_unit` reads a unit as written after a number ("cm", "km", "kg", "min", "hours", "cm^2",
"m²", "square feet"); `Unit.factor_to` gives the factor that converts a value into another unit of
the same dimension, or None across dimensions. Anything else (compound units such as "m/s",
degrees, currencies) is not a unit here: the grader then compares the numbers alone.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Unit", "parse_unit"]


class Unit(NamedTuple):
    """A unit as a dimension (``"length"``, ``"mass"``, ``"time"``, with a power: ``"length^2"``) and
    its size in the SI base unit of that dimension (metre, kilogram, second)."""

    dimension: str
    size: float

    def factor_to(self, other: Unit) -> float | None:
        """Factor converting a value in this unit into ``other`` (``cm -> m``: 0.01); None when the
        dimensions differ."""
        return self.size / other.size if self.dimension == other.dimension else None


def _spellings(dimension: str, size: float, *names: str) -> dict[str, Unit]:
    return {name: Unit(dimension, size) for name in names}


_SYMBOLS: dict[str, Unit] = {  # case-sensitive
    **_spellings("length", 1e-9, "nm"),
    **_spellings("length", 1e-6, "µm", "μm", "um"),
    **_spellings("length", 1e-3, "mm"),
    **_spellings("length", 1e-2, "cm"),
    **_spellings("length", 0.1, "dm"),
    **_spellings("length", 1.0, "m"),
    **_spellings("length", 1e3, "km"),
    **_spellings("length", 0.0254, "in"),
    **_spellings("length", 0.3048, "ft"),
    **_spellings("length", 0.9144, "yd"),
    **_spellings("length", 1609.344, "mi"),
    **_spellings("mass", 1e-6, "mg"),
    **_spellings("mass", 1e-3, "g"),
    **_spellings("mass", 1.0, "kg"),
    **_spellings("mass", 1e3, "t"),
    **_spellings("mass", 0.45359237, "lb", "lbs"),
    **_spellings("mass", 0.028349523125, "oz"),
    **_spellings("time", 1e-3, "ms"),
    **_spellings("time", 1.0, "s", "sec", "secs"),
    **_spellings("time", 60.0, "min", "mins"),
    **_spellings("time", 3600.0, "h", "hr", "hrs"),
}
_WORDS: dict[str, Unit] = {  # lower case, singular and plural
    **_spellings("length", 1e-3, "millimeter", "millimetre"),
    **_spellings("length", 1e-2, "centimeter", "centimetre"),
    **_spellings("length", 0.1, "decimeter", "decimetre"),
    **_spellings("length", 1.0, "meter", "metre"),
    **_spellings("length", 1e3, "kilometer", "kilometre"),
    **_spellings("length", 0.0254, "inch", "inches"),
    **_spellings("length", 0.3048, "foot", "feet"),
    **_spellings("length", 0.9144, "yard"),
    **_spellings("length", 1609.344, "mile"),
    **_spellings("mass", 1e-6, "milligram", "milligramme"),
    **_spellings("mass", 1e-3, "gram", "gramme"),
    **_spellings("mass", 1.0, "kilogram", "kilogramme", "kilo"),
    **_spellings("mass", 1e3, "tonne", "ton"),
    **_spellings("mass", 0.45359237, "pound"),
    **_spellings("mass", 0.028349523125, "ounce"),
    **_spellings("time", 1e-3, "millisecond"),
    **_spellings("time", 1.0, "second"),
    **_spellings("time", 60.0, "minute"),
    **_spellings("time", 3600.0, "hour"),
    **_spellings("time", 86400.0, "day"),
    **_spellings("time", 604800.0, "week"),
}
_POWER_WORDS = {"square": 2, "sq": 2, "cubic": 3, "cu": 3}
_UNIT_TEXT = re.compile(
    r"(?:(?P<word>square|sq|cubic|cu)\.?\s+)?(?P<name>[A-Za-zµμ]+)\.?"
    r"\s*(?:\^\s*\{?\s*(?P<exp>[23])\s*\}?|(?P<sup>[²³]))?"
)


def parse_unit(text: str) -> Unit | None:
    """The unit ``text`` spells (surrounding spaces and a full stop allowed), or None when it is not
    one of the known units of length, mass or time, or a power of a length."""
    match = _UNIT_TEXT.fullmatch(text.strip().rstrip("."))
    if not match:
        return None
    name = match["name"]
    unit = _SYMBOLS.get(name) or _WORDS.get(name.lower()) or _WORDS.get(name.lower().removesuffix("s"))
    if unit is None:
        return None
    powers = [p for p in (_POWER_WORDS.get(match["word"] or ""), match["exp"] and int(match["exp"]),
                          match["sup"] and "²³".index(match["sup"]) + 2) if p]
    if len(powers) > 1 or (powers and unit.dimension != "length"):
        return None
    power = powers[0] if powers else 1
    return unit if power == 1 else Unit(f"{unit.dimension}^{power}", unit.size**power)
