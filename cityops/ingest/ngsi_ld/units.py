"""UN/CEFACT unit codes (Recommendation 20) → the units of the cityops feed contracts.

NGSI-LD carries a measurement's unit in ``unitCode``; the Smart Data Models define a default
unit for each attribute when it is absent. Every code is converted exactly; a code not listed
here is refused (``unknown_unit``), never guessed.

=====  ===========================  ===========================================================
code   unit                         converted to
=====  ===========================  ===========================================================
GQ     microgram per cubic metre    µg/m³ (÷ 1000 for CO's mg/m³)
GP     milligram per cubic metre    mg/m³ (× 1000 for µg/m³)
GL     gram per litre               × 10⁹ µg/m³ (no real air reading survives the range check)
59     part per million (ppm)       µg/m³ = ppb × M / 24.45 at 25 °C and 1 atm (gases only)
61     part per billion (ppb)       as above
CEL    degree Celsius               °C
FAH    degree Fahrenheit            (x − 32) × 5/9 °C
KEL    kelvin                       x − 273.15 °C
P1     percent                      %
C62    one (a dimensionless ratio)  × 100 % for relative humidity
=====  ===========================  ===========================================================

The ppm/ppb conversion uses the molar volume at 25 °C (24.45 L/mol), the reference state of
China's GB 3095-2012 gas limits.
"""

from __future__ import annotations

from cityops.ingest.exceptions import MappingError

MOLAR_VOLUME_L = 24.45  # L/mol at 25 °C, 101.325 kPa
MOLAR_MASS_G = {"no2": 46.0055, "o3": 47.9982, "so2": 64.066, "co": 28.010}

# micrograms per cubic metre per unit of each mass-concentration code
_UGM3_PER = {"GQ": 1.0, "GP": 1_000.0, "GL": 1_000_000_000.0}
_PPB_PER = {"61": 1.0, "59": 1_000.0}


def concentration_ugm3(pollutant: str, value: float, unit: str, attribute: str) -> float:
    """A pollutant concentration in µg/m³ from ``value`` in ``unit``."""
    if unit in _UGM3_PER:
        return value * _UGM3_PER[unit]
    if unit in _PPB_PER:
        molar = MOLAR_MASS_G.get(pollutant)
        if molar is None:
            raise MappingError("unknown_unit", f"{attribute}: {pollutant} is a particle "
                               f"concentration and cannot be given in {unit_name(unit)}",
                               attribute)
        return value * _PPB_PER[unit] * molar / MOLAR_VOLUME_L
    raise MappingError("unknown_unit", f"{attribute}: unitCode {unit!r} is not a "
                       "concentration cityops converts (GQ, GP, GL, 59, 61)", attribute)


def temperature_c(value: float, unit: str, attribute: str) -> float:
    """A temperature in °C from ``value`` in ``unit`` (CEL, FAH, KEL)."""
    if unit == "CEL":
        return value
    if unit == "FAH":
        return (value - 32.0) * 5.0 / 9.0
    if unit == "KEL":
        return value - 273.15
    raise MappingError("unknown_unit", f"{attribute}: unitCode {unit!r} is not a temperature "
                       "cityops converts (CEL, FAH, KEL)", attribute)


def humidity_pct(value: float, unit: str, attribute: str) -> float:
    """Relative humidity in % from ``value`` in ``unit`` (C62 a 0–1 ratio, P1 percent)."""
    if unit == "C62":
        if not 0.0 <= value <= 1.0:
            raise MappingError("out_of_range", f"{attribute}: {value} is not a 0–1 ratio (the "
                               "model's default unit); send unitCode P1 for percent",
                               attribute)
        return value * 100.0
    if unit == "P1":
        return value
    raise MappingError("unknown_unit", f"{attribute}: unitCode {unit!r} is not a humidity "
                       "unit cityops converts (C62, P1)", attribute)


_NAMES = {"GQ": "µg/m³", "GP": "mg/m³", "GL": "g/L", "59": "ppm", "61": "ppb", "CEL": "°C",
          "FAH": "°F", "KEL": "K", "P1": "%", "C62": "ratio"}


def unit_name(code: str) -> str:
    """A readable name for a unit code, for reasons shown to people."""
    return _NAMES.get(code, code)
