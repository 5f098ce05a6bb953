"""The search language and its tokenisation, written once in Python for both databases.

Tokenisation (documents and queries alike): Unicode NFKD, combining marks dropped (so "Café" is "cafe"),
case folded, then split into runs of letters and digits (Unicode categories L* and N*); every other
character separates tokens, so "linux/arm64" is "linux arm64" and an emoji is nothing. No stemming and no
stop words (the equivalent of PostgreSQL's 'simple' configuration): "databases" does not find "database",
on either database. Tokens are cut to TOKEN_CHARS characters.

The databases never tokenise text themselves, which is what makes their results the same:
- SQLite FTS5 indexes the space-joined tokens with the ``ascii`` tokenizer, which splits on ASCII
  non-alphanumerics (only spaces are left) and keeps every non-ASCII character: the tokens are ours, exactly;
- PostgreSQL gets a ``tsvector`` literal built here (lexemes, positions and weights; no parser involved),
  and queries as ``tsquery`` literals built from the same parse (``CAST(... AS tsquery)``, not
  ``to_tsquery``/``websearch_to_tsquery``, whose parser would split tokens its own way).

The language, close to web search engines' (and to ``websearch_to_tsquery``): words are ANDed; ``"a b"``
is a phrase (its tokens adjacent, in one field); ``-word`` or ``-"a phrase"`` excludes; ``OR`` (capitals)
between two items accepts either; a word that tokenises into several tokens ("linux/arm64") is a phrase.
The last word, when the query does not end in a space or a quote, also matches as a prefix (search as you
type), if it has at least PREFIX_MIN characters. Anything else is text: no input is a syntax error.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from dataclasses import dataclass, field

MAX_QUERY_CHARS = 256  # the rest of a longer query is ignored
MAX_ITEMS = 12  # words or phrases, included and excluded together
MAX_PHRASE_TOKENS = 8
TOKEN_CHARS = 64
PREFIX_MIN = 3

# Documents: the index keeps at most this many tokens of a listing (in field order) and this many
# occurrences of one token, the same on both databases (PostgreSQL keeps 256 positions per lexeme and
# positions up to 16383; FTS5 has no such limits, so both are held to ours).
DOC_TOKENS = 4000
TOKEN_OCCURRENCES = 200
FIELD_GAP = 2  # positions left empty between fields on PostgreSQL: a phrase never spans two fields

# The indexed fields in order, with their weight class: A name; B tags and publisher; C short description
# and category; D long description. Relevance counts the classes a query hits (see store.search).
FIELDS: tuple[tuple[str, str], ...] = (
    ("name", "A"),
    ("tags", "B"),
    ("publisher", "B"),
    ("short", "C"),
    ("category", "C"),
    ("long", "D"),
)
CLASS_SCORES = {"A": 8, "B": 4, "C": 2, "D": 1}

_SPLIT = re.compile(r'(-?)"([^"]*)"?|(\S+)')  # -"a phrase", "a phrase" (closing quote optional), a word


def tokens(text: str) -> list[str]:
    """The tokens of a text (see the module's docstring)."""
    decomposed = unicodedata.normalize("NFKD", text)
    out: list[str] = []
    current: list[str] = []
    for ch in decomposed:
        cat = unicodedata.category(ch)
        if cat[0] in "LN":
            current.append(ch)
        elif cat == "Mn":
            continue  # a combining mark (an accent): dropped, the letter stays
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    result = []
    for token in out:
        # Case folding can produce combining marks again (rarely): keep letters and digits only.
        folded = "".join(c for c in token.casefold() if unicodedata.category(c)[0] in "LN")
        if folded:
            result.append(folded[:TOKEN_CHARS])
    return result


@dataclass(frozen=True)
class Item:
    """A word (one token) or a phrase (several, adjacent); ``prefix``: its last token is a prefix."""

    tokens: tuple[str, ...]
    prefix: bool = False


@dataclass
class Query:
    """A parsed query: ``clauses`` are ANDed, each a list of items ORed; ``excluded`` items must not match."""

    clauses: list[list[Item]] = field(default_factory=list)
    excluded: list[Item] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.clauses and not self.excluded

    @property
    def positive(self) -> list[Item]:
        return [item for clause in self.clauses for item in clause]


def parse(text: str | None) -> Query:
    """The query of a user's text; never fails (see the module's docstring for the language)."""
    raw = (text or "").replace("\x00", " ")[:MAX_QUERY_CHARS]
    query = Query()
    pending_or = False
    count = 0
    matches = list(_SPLIT.finditer(raw))
    for index, match in enumerate(matches):
        if count >= MAX_ITEMS:
            break
        quoted, word = match.group(2), match.group(3)
        negate = match.group(1) == "-"
        if word is not None:
            if word == "OR":
                pending_or = bool(query.clauses)
                continue
            if word.startswith("-") and len(word) > 1:
                negate, word = True, word[1:]
            toks = tokens(word)
        else:
            toks = tokens(quoted)
        if not toks:
            continue
        toks = toks[:MAX_PHRASE_TOKENS]
        last = index == len(matches) - 1
        prefix = (
            word is not None
            and not negate
            and last
            and len(toks) == 1
            and len(toks[0]) >= PREFIX_MIN
            and match.end() == len(raw)
            and not raw.endswith('"')
        )
        item = Item(tuple(toks), prefix)
        count += 1
        if negate:
            query.excluded.append(item)
            pending_or = False
        elif pending_or:
            query.clauses[-1].append(item)
            pending_or = False
        else:
            query.clauses.append([item])
    return query


# -- SQLite FTS5 ------------------------------------------------------------------------------------------
def _fts_item(item: Item) -> str:
    # Tokens hold letters and digits only: quoting them is always valid FTS5 syntax.
    phrase = '"' + " ".join(item.tokens) + '"'
    return phrase + " *" if item.prefix else phrase


def fts_positive(query: Query) -> str | None:
    """The FTS5 MATCH expression of the included items (None: there are none)."""
    if not query.clauses:
        return None
    parts = []
    for clause in query.clauses:
        rendered = [_fts_item(i) for i in clause]
        parts.append(rendered[0] if len(rendered) == 1 else "(" + " OR ".join(rendered) + ")")
    return " AND ".join(parts)


def fts_excluded(query: Query) -> str | None:
    """The FTS5 MATCH expression any excluded item matches (None: nothing is excluded)."""
    if not query.excluded:
        return None
    return " OR ".join(_fts_item(i) for i in query.excluded)


def fts_in_class(query: Query, weight: str) -> str:
    """The FTS5 MATCH expression of the included items that also hit a field of weight class ``weight``
    (a column filter over the class's columns)."""
    columns = " ".join(name for name, w in FIELDS if w == weight)
    items = " OR ".join(_fts_item(i) for i in query.positive)
    return f"({fts_positive(query)}) AND {{{columns}}} : ({items})"


def fts_document(fields: dict[str, str]) -> dict[str, str]:
    """The FTS5 row of a listing's fields: each field's tokens, space-joined (after the document limits)."""
    return {name: " ".join(toks) for name, toks in document_tokens(fields).items()}


# -- PostgreSQL tsvector / tsquery ------------------------------------------------------------------------
# Phrases on PostgreSQL: each pair of adjacent tokens of a field (a bigram) is a lexeme of its own, at the
# first token's position with the field's weight, in a tsvector of pairs (``search_pairs``, its own GIN
# index; the words' ``search_document`` stays as small as before, which the per-row checks read). A
# two-token phrase is then one lexeme (the index answers it exactly, where ``'a' <-> 'b'`` re-reads the
# positions of every listing with both words), and a longer one a chain of its pairs, ``'_a_b' <-> '_b_c'``:
# adjacent pairs at consecutive positions are the tokens at consecutive positions, so the match is the same
# (and the index narrows it to the listings holding every pair). Tokens hold letters and digits only, so a
# lexeme starting with BIGRAM_MARK is never a token (nor matched by a token's prefix query). The name's own
# tsvector (``search_name``) holds its words and its pairs.
BIGRAM_MARK = "_"
BIGRAM_BYTES = 64  # a longer pair is named by a digest: a tsvector is limited to 1 MB and lexemes to 2 KB

# A part of a tsquery: (pairs, literal), pairs True when it is over the pairs' tsvector, else the words'.
TsPart = tuple[bool, str]


def bigram(first: str, second: str) -> str:
    """The lexeme of two adjacent tokens (see above): ``_first_second``, or ``__`` and a digest if long."""
    pair = f"{BIGRAM_MARK}{first}{BIGRAM_MARK}{second}"
    if len(pair.encode()) <= BIGRAM_BYTES:
        return pair
    return BIGRAM_MARK * 2 + hashlib.blake2b(pair.encode(), digest_size=16).hexdigest()


def _ts_item(item: Item, weight: str = "") -> TsPart:
    # Lexemes hold letters, digits and BIGRAM_MARK only: quoting them is always a valid tsquery literal.
    if len(item.tokens) > 1:  # a phrase (never a prefix): its pairs, adjacent
        pairs = [bigram(a, b) for a, b in itertools.pairwise(item.tokens)]
        lexemes = [f"'{pair}':{weight}" if weight else f"'{pair}'" for pair in pairs]
        return True, "( " + " <-> ".join(lexemes) + " )" if len(lexemes) > 1 else lexemes[0]
    flags = ("*" if item.prefix else "") + weight
    return False, f"'{item.tokens[0]}':{flags}" if flags else f"'{item.tokens[0]}'"


def ts_any(items: list[Item], weight: str = "") -> list[TsPart]:
    """The tsquery parts any of the items matches (words ORed in one part, phrases in another), each item
    restricted to the fields of weight class ``weight`` when given."""
    rendered = [_ts_item(i, weight) for i in items]
    out = []
    for pairs in (False, True):
        literals = [lit for p, lit in rendered if p is pairs]
        if literals:
            out.append((pairs, " | ".join(literals)))
    return out


def ts_clauses(query: Query) -> list[list[TsPart]]:
    """The tsquery parts of the included items: the listing matches when, in every clause, a part does."""
    return [ts_any(clause) for clause in query.clauses]


def ts_name_query(parts: list[TsPart]) -> str:
    """The parts as one tsquery over the name's tsvector (which holds the name's words and pairs)."""
    return " | ".join(f"( {literal} )" for _pairs, literal in parts)


def ts_document(fields: dict[str, str], words: bool = True, pairs: bool = False) -> str:
    """The tsvector literal of a listing's fields: lexemes with their positions and weight classes; the
    words, the pairs of adjacent words (see bigram), or both."""
    positions: dict[str, list[str]] = {}
    pos = 1
    for (_name, weight), toks in zip(FIELDS, document_tokens(fields).values(), strict=True):
        for index, token in enumerate(toks):
            if words:
                positions.setdefault(token, []).append(f"{pos}{weight}")
            if pairs and index + 1 < len(toks):  # the pair it starts, within the field
                positions.setdefault(bigram(token, toks[index + 1]), []).append(f"{pos}{weight}")
            pos += 1
        pos += FIELD_GAP
    return " ".join(f"'{lexeme}':{','.join(p)}" for lexeme, p in positions.items())


def document_tokens(fields: dict[str, str]) -> dict[str, list[str]]:
    """Each field's tokens, in FIELDS order, within the document limits (DOC_TOKENS, TOKEN_OCCURRENCES)."""
    seen: dict[str, int] = {}
    total = 0
    out: dict[str, list[str]] = {}
    for name, _weight in FIELDS:
        kept = []
        for token in tokens(fields.get(name) or ""):
            if total >= DOC_TOKENS:
                break
            if seen.get(token, 0) >= TOKEN_OCCURRENCES:
                continue
            seen[token] = seen.get(token, 0) + 1
            kept.append(token)
            total += 1
        out[name] = kept
    return out
