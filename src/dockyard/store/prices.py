"""Prices as customers read them: "Free", "€49.00 / month", "¥5,000 / year", "CHF 120.00 one-time".

Amounts are stored in the currency's minor units (publishing.manifest.Price). Babel is not a dependency, so
this is the small part of it the store needs: the symbol of the common currencies (the ISO code otherwise),
and the number of minor digits of the currencies that do not have two (ISO 4217's exponent).
"""

from __future__ import annotations

from typing import Any

# Symbols customers recognise without ambiguity; any other currency shows its ISO code before the amount.
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹", "KRW": "₩", "ILS": "₪", "VND": "₫"}
# ISO 4217 exponents other than 2.
EXPONENTS = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
         "XAF", "XOF", "XPF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}  # fmt: skip
PERIODS = {"month": " / month", "year": " / year", "one-time": " one-time"}


def format_amount(amount: int, currency: str) -> str:
    """4900, "EUR" -> "€49.00"; 5000, "JPY" -> "¥5,000"; 12000, "CHF" -> "CHF 120.00"."""
    code = currency.upper()
    digits = EXPONENTS.get(code, 2)
    number = f"{amount / 10**digits:,.{digits}f}"
    symbol = SYMBOLS.get(code)
    return f"{symbol}{number}" if symbol else f"{code}\N{NO-BREAK SPACE}{number}"


def format_price(price: Any) -> str:
    """A tier's price (None for free, else a Price or its dict) as one short line."""
    if price is None or price == "free":
        return "Free"
    get = price.get if isinstance(price, dict) else lambda k: getattr(price, k)
    period = str(get("period"))
    return format_amount(int(get("amount")), str(get("currency"))) + PERIODS.get(period, f" / {period}")
