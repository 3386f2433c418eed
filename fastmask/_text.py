"""Counted nouns for messages: ``1 item``, ``2 items``, ``1 item/s``."""
from __future__ import annotations

def _plural_noun(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def plural(n: float, noun: str, spec: str = ",") -> str:
    """``n`` formatted with ``spec`` and the noun, singular when the number reads 1.

    >>> plural(1, "component"), plural(2, "colour"), plural(1000, "more class"), plural(0, "category")
    ('1 component', '2 colours', '1,000 more classes', '0 categories')
    """
    text = format(n, spec)
    word = noun if text in ("1", "-1") else _plural_noun(noun)
    return f"{text} {word}"


def rate(per_second: float, noun: str) -> str:
    """A speed rounded to whole units per second: ``1 item/s``, ``1,234 items/s``.

    >>> rate(0.6, "item"), rate(1234.4, "image")
    ('1 item/s', '1,234 images/s')
    """
    return plural(per_second, noun, ",.0f") + "/s"


def run_speed(result, noun: str = "item") -> str:
    """The speed of a run's own work; a resumed run says how much it ran and kept.

    >>> from types import SimpleNamespace as R
    >>> run_speed(R(items_per_second=250.0, skipped_shards=0, processed_items=500))
    '250 items/s'
    >>> run_speed(R(items_per_second=1.0, skipped_shards=3, processed_items=1), "image")
    '1 image/s (resumed: 1 image run now, 3 finished shards kept)'
    >>> run_speed(R(items_per_second=9.0, skipped_shards=0, processed_items=9, listing={"objects": 9, "seconds": 0.5}))
    '9 items/s, listing 0.50 s (9 objects)'
    """
    text = rate(result.items_per_second, noun)
    listing = getattr(result, "listing", None) or {}
    if result.skipped_shards:
        text += (f" (resumed: {plural(result.processed_items, noun)} run now, "
                 f"{plural(result.skipped_shards, 'finished shard')} kept"
                 + (", saved manifest reused: no listing" if listing.get("reused") else "") + ")")
    elif listing.get("reused"):
        text += " (saved manifest reused: no listing)"
    elif listing.get("objects") is not None:
        text += f", listing {listing['seconds']:.2f} s ({plural(listing['objects'], 'object')})"
    return text
