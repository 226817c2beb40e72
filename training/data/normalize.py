"""Spoken-form text normalization, for comparing a known transcript with what ASR heard.

"2 lbs of flour" and Whisper's "two pounds of flour" must compare equal, so both sides are turned
into lowercase spoken words: numbers, ordinals, money, percentages, times, common abbreviations,
units and British spellings are expanded the same way. `spoken_words(word)` works one written
word at a time, so a caller can map every spoken word back to the written word it came from.
"""

from __future__ import annotations

import re

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}

# Abbreviations as written -> as spoken (keys lowercase, trailing "." removed). Only unambiguous
# ones: "mm" is also a hum and "min" a name, so those are expanded only after a number (UNITS).
ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "jr": "junior",
    "sr": "senior", "prof": "professor", "mt": "mount", "ave": "avenue", "rd": "road",
    "etc": "et cetera", "e.g": "for example", "i.e": "that is", "vs": "versus", "approx": "approximately",
    "lb": "pounds", "lbs": "pounds", "oz": "ounces", "kg": "kilograms", "mg": "milligrams",
    "km": "kilometers", "cm": "centimeters", "mph": "miles per hour", "km/h": "kilometers per hour",
    "mins": "minutes", "hrs": "hours", "secs": "seconds", "ml": "milliliters", "tbsp": "tablespoons",
    "tsp": "teaspoons", "°c": "degrees celsius", "°f": "degrees fahrenheit", "a.m": "a m", "p.m": "p m",
    "ok": "okay", "&": "and", "%": "percent", "tv": "t v", "usa": "u s a", "uk": "u k",
}
UNITS = ABBREVIATIONS | {
    "mm": "millimeters", "g": "grams", "l": "liters", "mi": "miles", "ft": "feet", "m": "meters",
    "min": "minutes", "hr": "hours", "h": "hours", "sec": "seconds", "s": "seconds",
    "am": "a m", "pm": "p m",  # "7pm", "7:30am" as ASR writes them; "I am" stays "am"
}
# British -> American spelling, so "colour" (text) equals "color" (Whisper).
SPELLINGS = {
    "colour": "color", "colours": "colors", "favourite": "favorite", "favourites": "favorites",
    "centre": "center", "metre": "meter", "metres": "meters", "litre": "liter", "litres": "liters",
    "theatre": "theater", "grey": "gray", "neighbour": "neighbor", "neighbours": "neighbors",
    "travelling": "traveling", "organise": "organize", "realise": "realize", "kilometres": "kilometers",
    "mum": "mom", "programme": "program", "harbour": "harbor", "flavour": "flavor", "honour": "honor",
}
_CURRENCY = {"$": ("dollars", "cents"), "£": ("pounds", "pence"), "€": ("euros", "cents")}


def cardinal(n: int) -> str:
    """0 <= n < 10**12 as words: 2021 -> "two thousand twenty one"."""
    assert 0 <= n < 10**12, f"cardinal() covers 0 .. 10**12 - 1, got {n}"
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            return f"{cardinal(head)} {name}" + ("" if rest == 0 else " " + cardinal(rest))
    raise AssertionError("unreachable")


def ordinal(n: int) -> str:
    """3 -> "third", 21 -> "twenty first", 40 -> "fortieth"."""
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL:
        words[-1] = _ORDINAL[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _number(token: str) -> str:
    """"1,234" / "3.5" -> words; digits after the point are read one by one."""
    whole, _, fraction = token.replace(",", "").partition(".")
    words = cardinal(int(whole)) if whole else "zero"
    if fraction:
        words += " point " + " ".join(_ONES[int(d)] for d in fraction)
    return words


_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_PATTERNS: list[tuple[re.Pattern[str], object]] = [
    (re.compile(rf"([$£€])({_NUMBER})"), lambda m: _money(m.group(1), m.group(2))),
    (re.compile(r"(\d+)(st|nd|rd|th)"), lambda m: ordinal(int(m.group(1)))),
    (re.compile(r"(\d*)o'clock(?:([ap])\.?m\.?)?"),  # "o'clockpm": ASR's "1 o'clock PM" joined
     lambda m: " ".join(filter(None, (m.group(1) and cardinal(int(m.group(1))), "o'clock",
                                       m.group(2) and f"{m.group(2)} m")))),
    # "7:30", "7.30am" (ASR writes both): a clock, so "8.30" and "8:30" compare equal
    (re.compile(r"(\d{1,2})[:.](\d{2})(?:([ap])\.?m\.?)?"),
     lambda m: _clock(int(m.group(1)), int(m.group(2))) + (f" {m.group(3)} m" if m.group(3) else "")),
    (re.compile(rf"({_NUMBER})%"), lambda m: _number(m.group(1)) + " percent"),
    (re.compile(rf"({_NUMBER})([a-z°/]+)"), lambda m: _number(m.group(1)) + " " + _unit(m.group(2))),
    (re.compile(_NUMBER), lambda m: _number(m.group(0))),
]


def _money(symbol: str, amount: str) -> str:
    major_name, minor_name = _CURRENCY[symbol]
    whole, _, cents = amount.replace(",", "").partition(".")
    words = f"{cardinal(int(whole))} {major_name}"
    if cents and int(cents):
        words += f" {cardinal(int(cents.ljust(2, '0')[:2]))} {minor_name}"
    return words


def _clock(hours: int, minutes: int) -> str:
    if minutes == 0:
        return f"{cardinal(hours)} o'clock"
    return f"{cardinal(hours)} {'oh ' + cardinal(minutes) if minutes < 10 else cardinal(minutes)}"


def _unit(unit: str) -> str:
    return UNITS.get(unit, unit)


def spoken_words(word: str) -> list[str]:
    """One written word -> the lowercase words a speaker says for it (possibly none: "—")."""
    token = word.lower().strip("\"“”‘’()[]{}!?,;:…—–")
    token = token.replace("’", "'")
    if token.rstrip(".") in ABBREVIATIONS:
        return ABBREVIATIONS[token.rstrip(".")].split()
    token = token.rstrip(".")
    for pattern, expand in _PATTERNS:
        if pattern.fullmatch(token):
            return pattern.sub(expand, token).split()
    spoken: list[str] = []
    for part in re.split(r"[-/]", token):
        if part != token:
            spoken.extend(spoken_words(part))  # each piece of "grey-blue" or "24/7" on its own
            continue
        for piece in re.findall(r"\d+|[a-z]+(?:'[a-z]+)?", part):  # "90s" -> 90, s
            if piece.isdigit():
                long_number = len(piece) >= 12  # beyond cardinal(): read digit by digit
                spoken.extend((_ONES[int(d)] for d in piece) if long_number else cardinal(int(piece)).split())
            else:
                spoken.append(SPELLINGS.get(piece, piece))
    return spoken


_CONTRACTIONS = (("n't", "not"), ("'re", "are"), ("'ll", "will"), ("'ve", "have"), ("'m", "am"),
                 ("'d", "would"), ("'s", "is"))


def comparison_words(word: str) -> list[str]:
    """spoken_words with contractions opened ("mayor's" -> "mayor is"), for comparing texts only:
    ASR writes "The mayor's" for "The mayor is". Possessives open too, the same way on both sides."""
    words: list[str] = []
    for spoken in spoken_words(word):
        for suffix, full in _CONTRACTIONS:
            if spoken.endswith(suffix) and len(spoken) > len(suffix):
                stem = spoken[: -len(suffix)]
                words += ["will" if stem == "wo" else "can" if stem == "ca" else stem, full]
                break
        else:
            words.append(spoken)
    return words


_PUNCTUATION = ",.?!;:"


def speakable(text: str) -> tuple[str, list[int]]:
    """Text for a synthesizer: every written word in spoken form, its punctuation kept for prosody.

    TTS front ends read "$26.50" or "1:00 p.m." badly; we say it for them and keep the written
    form as the label. Returns (text to speak, spoken words per written word) so that word times
    reported on the spoken text map back to the written words.
    """
    pieces: list[str] = []
    counts: list[int] = []
    words = text.split()
    for k, word in enumerate(words):
        spoken = spoken_words(word)
        counts.append(len(spoken))
        mark = word[-1] if word[-1] in _PUNCTUATION else ("," if word in ("-", "–", "—") else "")
        if mark == "." and k < len(words) - 1 and word.lower().rstrip(".") in ABBREVIATIONS:
            mark = ""  # the dot of "Mr." or "a.m." mid-sentence is no full stop
        if spoken:
            pieces.append(" ".join(spoken) + mark)
        elif mark and pieces:
            pieces[-1] += mark
    return " ".join(pieces), counts


def normalize(text: str) -> str:
    """Whole text -> spoken form: "Mr. Smith paid $3.50." -> "mister smith paid three dollars fifty cents"."""
    return " ".join(w for word in text.split() for w in spoken_words(word))
