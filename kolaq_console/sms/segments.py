"""How many SMS segments a body costs: GSM-7 when every character is in the GSM 03.38
alphabet, else UCS-2.

The alphabet (basic set and the escape-extended `{}[]~|^\\€`, which cost two septets) comes
from the maintained `gsm0338` codec. The segment arithmetic is these few lines because no
maintained library does it (`smsutil` was last released in 2020 and needs the py2 `future`
shim): one segment holds 160 septets or 70 UTF-16 units; a longer body is split into parts of
153 septets or 67 units (the rest is the concatenation header), and a part never ends in the
middle of an escape pair or a surrogate pair, which is why a long body can cost one part more
than a plain division says.
"""

from __future__ import annotations

from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

GSM7 = "gsm7"
UCS2 = "ucs2"
SINGLE = {GSM7: 160, UCS2: 70}
PART = {GSM7: 153, UCS2: 67}
MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies (error 21617)


@dataclass(frozen=True)
class Segments:
    encoding: str  # gsm7 | ucs2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int

    def describe(self) -> str:
        per = "septets" if self.encoding == GSM7 else "UCS-2 units"
        plural = "" if self.segments == 1 else "s"
        return f"{self.segments} segment{plural} ({self.encoding.upper()}, {self.units} {per})"


def _widths(text: str) -> tuple[str, list[int]]:
    try:
        return GSM7, [len(ch.encode("gsm03.38")) for ch in text]
    except UnicodeEncodeError:
        return UCS2, [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def count_segments(text: str) -> Segments:
    """The encoding, length in units and number of segments of `text` as an SMS."""
    encoding, widths = _widths(text)
    units = sum(widths)
    if units <= SINGLE[encoding]:
        return Segments(encoding, units, 1 if units else 0)
    part, used, parts = PART[encoding], 0, 1
    for width in widths:
        if used + width > part:
            parts += 1
            used = 0
        used += width
    return Segments(encoding, units, parts)
