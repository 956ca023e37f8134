"""Which instrument at the follower's broker a provider symbol becomes, and whether it may be copied.

Brokers spell one instrument several ways: the canonical ``EUR/USD``, OANDA's ``EUR_USD``, a
MetaTrader broker's ``EURUSD.m``. A provider symbol is resolved in this order, and the first
step that finds anything decides (two matches at one step are ambiguous and skip, because
guessing between ``EURUSD.m`` and ``EURUSD.pro`` could trade the wrong account type):

1. the follower's ``symbol_map`` entry, if any, replaces the provider symbol as the target
   (a target the follower spelled out is not subject to step 5);
2. an instrument whose canonical symbol is the target;
3. an instrument whose venue symbol is the target;
4. the same, comparing :func:`~brokerlink.engine.copy.settings.symbol_key` forms (case and
   separators ignored: ``EURUSD`` finds ``EUR/USD``);
5. the same, with a short broker suffix after the last ``.`` dropped from venue symbols
   (``EURUSD.m``). Equities are left out of this step: ``BRK.B`` is a share class, not a suffix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from brokerlink.domain.enums import AssetClass
from brokerlink.domain.models import Instrument
from brokerlink.engine.copy.reasons import Skip, SkipReason
from brokerlink.engine.copy.settings import CopySettings, symbol_key

MAX_SUFFIX_LEN = 5
"""Longest broker suffix dropped in step 5 (``.m``, ``.pro``, ``.ecn``, ``.micro``)."""


def strip_suffix(symbol: str) -> str:
    """``EURUSD.m`` -> ``EURUSD``: drop a short letters-and-digits suffix after the last ``.``, if any."""
    head, dot, tail = symbol.rpartition(".")
    if dot and head and 0 < len(tail) <= MAX_SUFFIX_LEN and tail.isalnum():
        return head
    return symbol


class SymbolIndex:
    """A broker's instruments indexed for :func:`resolve_symbol`. Build once per broker, reuse per copy."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._canonical: dict[str, Instrument] = {}
        self._venue: dict[str, Instrument] = {}
        self._loose: dict[str, list[Instrument]] = {}
        self._suffixed: dict[str, list[Instrument]] = {}
        for inst in instruments:
            self._canonical.setdefault(inst.symbol, inst)
            self._venue.setdefault(inst.venue_symbol, inst)
            for key in {symbol_key(inst.symbol), symbol_key(inst.venue_symbol)}:
                self._loose.setdefault(key, []).append(inst)
            if inst.asset_class is not AssetClass.EQUITY:
                self._suffixed.setdefault(symbol_key(strip_suffix(inst.venue_symbol)), []).append(inst)

    def candidates(self, symbol: str, *, drop_suffixes: bool = True) -> tuple[Instrument, ...]:
        """The instruments the first matching step (module docstring, steps 2-5) finds for ``symbol``.

        ``drop_suffixes=False`` stops after step 4: for a name the follower spelled out, where
        ``EURUSD.raw`` must not quietly become ``EURUSD.m``.
        """
        exact = self._canonical.get(symbol)
        if exact is None:
            exact = self._venue.get(symbol)
        if exact is not None:
            return (exact,)
        loose = self._loose.get(symbol_key(symbol))
        if loose or not drop_suffixes:
            return tuple(loose or ())
        keys = {symbol_key(symbol), symbol_key(strip_suffix(symbol))}
        return tuple({id(inst): inst for key in keys for inst in self._suffixed.get(key, ())}.values())


def mapped_symbol(settings: CopySettings, provider_symbol: str) -> str:
    """The follower-side symbol to look for: the ``symbol_map`` entry (exact, then by key), else the same."""
    exact = settings.symbol_map.get(provider_symbol)
    if exact is not None:
        return exact
    key = symbol_key(provider_symbol)
    for source, target in settings.symbol_map.items():
        if symbol_key(source) == key:
            return target
    return provider_symbol


def symbol_filter(settings: CopySettings, provider_symbol: str) -> Skip | None:
    """Apply the deny and allow lists to the provider symbol and to what it maps to; either may be named."""
    keys = {symbol_key(provider_symbol), symbol_key(mapped_symbol(settings, provider_symbol))}
    if keys & {symbol_key(s) for s in settings.deny_symbols}:
        return Skip(reason=SkipReason.SYMBOL_DENIED, detail=f"{provider_symbol} is in the deny list")
    allowed = settings.allow_symbols
    if allowed is not None and not keys & {symbol_key(s) for s in allowed}:
        return Skip(reason=SkipReason.SYMBOL_NOT_ALLOWED, detail=f"{provider_symbol} is not in the allow list")
    return None


def resolve_symbol(
    settings: CopySettings, provider_symbol: str, available: Mapping[str, Instrument] | SymbolIndex
) -> Instrument | Skip:
    """The follower's instrument for a provider's canonical symbol, or why there is none to copy into.

    ``available`` is the follower broker's instruments: a :class:`SymbolIndex` (fast, build it once
    per broker) or a mapping keyed by canonical or venue symbol (indexed on each call that misses).
    """
    refused = symbol_filter(settings, provider_symbol)
    if refused is not None:
        return refused
    target = mapped_symbol(settings, provider_symbol)
    mapped = target != provider_symbol
    found: tuple[Instrument, ...]
    if isinstance(available, SymbolIndex):
        found = available.candidates(target, drop_suffixes=not mapped)
    else:
        direct = available.get(target)
        if direct is not None:
            found = (direct,)
        else:
            found = SymbolIndex(available.values()).candidates(target, drop_suffixes=not mapped)
    via = f" (mapped to {target})" if mapped else ""
    if not found:
        return Skip(
            reason=SkipReason.SYMBOL_UNKNOWN_AT_BROKER,
            detail=f"{provider_symbol}{via} is not listed at the follower's broker",
        )
    if len(found) > 1:
        names = ", ".join(sorted(inst.venue_symbol for inst in found))
        return Skip(
            reason=SkipReason.SYMBOL_AMBIGUOUS,
            detail=f"{provider_symbol}{via} matches {names} at the follower's broker; add a symbol_map entry",
        )
    instrument = found[0]
    if not instrument.tradable:
        return Skip(
            reason=SkipReason.SYMBOL_NOT_TRADABLE,
            detail=f"{instrument.venue_symbol} is not tradable at the follower's broker",
        )
    return instrument
