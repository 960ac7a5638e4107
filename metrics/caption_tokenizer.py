"""coco-caption's caption tokenisation in pure Python (no Java).

coco-caption (``pycocoevalcap/tokenizer/ptbtokenizer.py``, github.com/tylin/coco-caption and its
pip release pycocoevalcap 1.2) tokenises every hypothesis and reference before scoring by running
the Stanford ``edu.stanford.nlp.process.PTBTokenizer`` of CoreNLP 3.4.1 with ``-preserveLines
-lowerCase`` and then dropping the tokens in :data:`PUNCTUATIONS`. :func:`tokenize` reproduces
that pipeline for the text people write in captions, without a Java runtime:

- words, numbers (``1,000.5``, ``3:30``, ``50/50``, ``+5``), hyphenated and dotted words
  (``black-and-white``, ``www.site.com``, ``a.k.a``) stay one token;
- clitics are split the PTB way: ``isn't`` -> ``is n't``, ``can't`` -> ``ca n't``,
  ``dog's`` -> ``dog 's``, ``dogs'`` -> ``dogs '``, ``cannot`` -> ``can not``,
  ``gonna`` -> ``gon na``; ``o'clock``, ``ma'am``, ``'90s`` and ``'n'`` stay whole;
- a final period is split off unless the word is an abbreviation CoreNLP knows (``mr.``,
  ``st.``, ``etc.``, ``p.m.``, single letters, ...: :data:`ABBREVIATIONS`);
- quotes become PTB quotes, brackets become ``-LRB-``/``-RRB-``/``-LSB-``/... and unicode
  dashes, quotes and ellipses are normalised;
- then everything is lower-cased and the tokens in :data:`PUNCTUATIONS` are dropped.

Quirk kept on purpose: CoreNLP lower-cases ``-LRB-`` to ``-lrb-`` *before* coco-caption's
punctuation filter, whose list holds the upper-case forms, so brackets survive as the tokens
``-lrb-``, ``-rrb-``, ``-lsb-``, ... in coco-caption's scores, and here.

The rules were derived from CoreNLP's observable behaviour (its output on probe sentences), not
from its source. ``tests/metrics/test_captioning.py`` compares this function with the Java
tokenizer on several hundred varied captions whenever ``java`` is installed.
"""
from __future__ import annotations

import re

__all__ = ["PUNCTUATIONS", "ABBREVIATIONS", "ptb_tokens", "tokenize"]

#: The tokens coco-caption removes after PTB tokenisation (``ptbtokenizer.py``), verbatim.
PUNCTUATIONS: frozenset[str] = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"])

#: Words that CoreNLP 3.4.1's PTB lexer keeps together with a following period, in any case
#: (months, weekdays, titles, company and street words, some state names), as observed.
ABBREVIATIONS: frozenset[str] = frozenset("""
jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri
ala ariz calif colo conn fla ga ind kan kans ky md mich minn mo mont neb nev okla penn tenn va vt wis wisc wyo
adm atty brig capt cmdr col comdr dr drs gen gov hon lt maj messrs mr mrs ms mme prof rep reps rev sen sens sgt
sr jr st ste supt pres pfc cpl esq co corp inc ltd bros cos plc assn univ dept mfg intl natl ave blvd rd mt ft
sq est vs etc al cf tel ext p bldg
""".split())

#: State abbreviations that are also English words: abbreviations only when capitalised.
_CAPITALISED_ABBREVIATIONS = frozenset("ark del ill la mass miss ore pa tex wash".split())

#: Abbreviations kept only before a number ("No. 5", "fig. 3", "pp. 12").
_NUMBER_ABBREVIATIONS = frozenset("no nos fig pp art ca".split())

# Whole words that the PTB lexer splits in two (lower-cased form -> split point).
_SPLIT_WORDS = {"cannot": 3, "gonna": 3, "gotta": 3, "wanna": 3, "lemme": 3, "gimme": 3}

_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}

# Unicode punctuation the PTB lexer maps to its ASCII forms.
_UNICODE = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                          "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
                          "\u2013": " -- ", "\u2014": " -- ", "\u2015": " -- ", "\u2026": " ... "})

_ALNUM = r"[^\W_]"  # a unicode letter or digit
# A word: letter/digit runs joined by hyphens, periods, slashes or apostrophes (apostrophes are
# resolved afterwards), and '&' only between capitals (AT&T stays, rock&roll splits).
# Periods join letters to letters and digits to digits only ("10.Red" is "10 . Red"); an acronym
# with its periods may start a hyphenated word ("U.S.-made").
_WORD = re.compile(rf"(?:(?:[A-Za-z]\.){{2,}}-)?{_ALNUM}+(?:(?:[-/']|(?<=[^\W\d_])\.(?=[^\W\d_])|(?<=\d)[.,](?=\d)|(?<=[A-Z])&(?=[A-Z])){_ALNUM}+)*")
_NUMBER = re.compile(r"[-+]?(?:\d+|[.,]\d+)(?:[.,:/]\d+)*")
_SGML = re.compile(r"</?[A-Za-z][^<>\n]*>")
_EMAIL = re.compile(rf"{_ALNUM}[\w.+-]*@{_ALNUM}+(?:[.-]{_ALNUM}+)*\.[A-Za-z]{{2,}}")
_HANDLE = re.compile(r"[#@][^\W\d_][^\W_]*")
_SMILEY = re.compile(r"[:;]-?[()DPp](?![^\W_])")
_DECADE = re.compile(r"'\d\ds(?![^\W_])")  # '90s
_LONE_CLITIC = re.compile(r"(?:'(?:[sSmMdD]|ll|LL|re|RE|ve|VE)|[nN]'[tT])(?![^\W_])")  # "the dog 's"
_N_APOSTROPHE = re.compile(r"'[nN]'")  # rock 'n' roll
_T_CLITIC = re.compile(r"'[tT](?=(?:is|was|IS|WAS)(?![^\W_]))")  # 'tis -> 't is
_MULTI = re.compile(r"\.{3,}|\.(?: \.){2,}|[?!]{2,}|-{2,}")
_ACRONYM = re.compile(r"[A-Za-z](?:\.[A-Za-z])+|[pP][hH]\.[dD]")  # u.s, p.m, a.k.a, ph.d
_CLITIC = re.compile(r"(.+?)('(?:s|m|d|ll|re|ve))", re.IGNORECASE)
_FRACTION_NEXT = re.compile(r" (\d+/\d+)(?![^\W_])")
_DIGIT_NEXT = re.compile(r"\s+\d")
_CLITIC_INSIDE = re.compile(r"(?:'(?:[sSmMdD]|ll|LL|re|RE|ve|VE)|[nN]'[tT])(?=[-./'])")
_SENTENCE_START = re.compile(r"\s+(?:A|An|The)(?![^\W_])")
_KEPT_APOSTROPHE = re.compile(r"[dDoOlL]'[^\W_]+|[mM][aA]'[aA][mM]")  # o'clock, d'artagnan, ma'am


def _is_abbreviation(word: str) -> bool:
    """Whether CoreNLP keeps ``word`` + "." as one token."""
    lower = word.lower()
    if lower in ABBREVIATIONS or (word[:1].isupper() and lower in _CAPITALISED_ABBREVIATIONS):
        return True
    if len(word) == 1:
        return word.isalpha()
    return _ACRONYM.fullmatch(word) is not None


def _split_word(word: str) -> list[str]:
    """PTB clitic splitting of one word token (no whitespace inside)."""
    if "'" not in word:
        cut = _SPLIT_WORDS.get(word.lower())
        return [word[:cut], word[cut:]] if cut else [word]
    lower = word.lower()
    if lower == "n't":
        return [word]
    # Clitics come off the end one at a time: shouldn't've -> should n't 've.
    if lower.endswith("n't") and len(word) > 3:
        return _split_word(word[:-3]) + [word[-3:]]
    match = _CLITIC.fullmatch(word)
    if match:
        return _split_word(match.group(1)) + [match.group(2)]
    if _KEPT_APOSTROPHE.fullmatch(word):
        return [word]
    if lower.startswith("y'") and len(word) > 2:  # y'all -> y' all
        return [word[:2]] + _split_word(word[2:])
    at = lower.find("'n'")
    if at >= 0:  # rock'n'roll -> rock 'n' roll
        before, after = word[:at], word[at + 3:]
        return (_split_word(before) if before else []) + [word[at:at + 3]] + (_split_word(after) if after else [])
    # Any other apostrophe separates two words and is itself a (dropped) quote.
    tokens: list[str] = []
    for i, part in enumerate(word.split("'")):
        if i:
            tokens.append("`")
        if part:
            tokens.extend(_split_word(part))
    return tokens


def _keeps_period(token: str, text: str, period: int) -> bool:
    """Whether the period at ``text[period]``, right after ``token``, stays part of the token."""
    if "'" in token:
        return False
    after = text[period + 1:period + 2]
    if after and after in ",;:":  # "no.," and "5.;" keep their period
        return True
    if token.lower() in _NUMBER_ABBREVIATIONS and _DIGIT_NEXT.match(text, period + 1):
        return True  # "No. 5", "fig. 3"
    if token[-1].isdigit() or not _is_abbreviation(token):
        return False
    # A single letter before a sentence-opening word ("plan B. The ...") ends the sentence.
    return not (len(token) == 1 and _SENTENCE_START.match(text, period + 1))


def ptb_tokens(text: str) -> list[str]:
    """PTB tokens of one line of text, in their original case (CoreNLP 3.4.1 ``PTBTokenizer``
    with ptb3 escaping, as coco-caption runs it, before lower-casing and punctuation removal)."""
    text = text.translate(_UNICODE).replace("&amp;", "&")  # CoreNLP's normalizeAmpersandEntity
    tokens: list[str] = []
    pos, end = 0, len(text)
    while pos < end:
        char = text[pos]
        if char.isspace():
            pos += 1
            continue
        # Longest match among the token patterns, the earlier pattern on ties (as a JFlex lexer).
        best_kind, best_end = "", pos
        for kind, pattern in (("number", _NUMBER), ("word", _WORD), ("sgml", _SGML), ("email", _EMAIL),
                              ("handle", _HANDLE), ("smiley", _SMILEY), ("decade", _DECADE), ("lone_clitic", _LONE_CLITIC),
                              ("clitic_n", _N_APOSTROPHE), ("clitic_t", _T_CLITIC), ("multi", _MULTI)):
            match = pattern.match(text, pos)
            if match and match.end() > best_end:
                best_kind, best_end = kind, match.end()
        if best_kind:
            token = text[pos:best_end]
            if best_kind == "word":
                # A clitic followed by more word characters ends the word: "men's-hats" is
                # "men 's - hats", "children's.The" is "children 's . The".
                clitic = _CLITIC_INSIDE.search(token)
                if clitic and clitic.end() < len(token):
                    token, best_end = token[:clitic.end()], pos + clitic.end()
                if best_end < end and text[best_end] == "." and _keeps_period(token, text, best_end):
                    token, best_end = token + ".", best_end + 1
                tokens.extend(_split_word(token))
            elif best_kind == "smiley":
                tokens.append(token[:-1] + _BRACKETS.get(token[-1], token[-1]))
            elif best_kind == "multi":
                tokens.append({".": "...", "-": "--"}.get(token[0], token))
            elif best_kind == "number" and token.isdigit() and (fraction := _FRACTION_NEXT.match(text, best_end)):
                # "1 1/2" is one token, joined by a no-break space as CoreNLP writes it.
                tokens.append(token + "\u00a0" + fraction.group(1))
                best_end = fraction.end()
            elif best_kind == "number" and text[best_end:best_end + 1] == "." and _keeps_period("0", text, best_end):
                tokens.append(token + ".")
                best_end += 1
            else:
                tokens.append(token)
            pos = best_end
            continue
        if char in _BRACKETS:
            tokens.append(_BRACKETS[char])
        elif char == '"':
            tokens.append("''")  # opening or closing PTB quote: both are dropped later
        else:
            tokens.append(char)
        pos += 1
    return tokens


def tokenize(caption: str) -> list[str]:
    """coco-caption's tokens of one caption: PTB tokenisation, lower case, punctuation removed.

    >>> tokenize("A man's dog isn't running, it's (maybe) happy.")
    ['a', 'man', "'s", 'dog', 'is', "n't", 'running', 'it', "'s", '-lrb-', 'maybe', '-rrb-', 'happy']
    """
    lowered = (token.lower() for token in ptb_tokens(caption.replace("\n", " ")))
    return [token for token in lowered if token not in PUNCTUATIONS]
