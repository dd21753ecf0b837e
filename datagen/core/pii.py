"""Personal data and secrets in text: where they are, what kind, masked for the record.

==============  ===================  ==============================================================
kind            placeholder          what counts
==============  ===================  ==============================================================
email           ``<EMAIL_ADDRESS>``  an address, except at reserved example domains (example.com,
                                     .test, .invalid, .localhost...), image names (icon@2x.png)
                                     and SSH remotes (git@github.com:org/repo.git)
phone           ``<PHONE_NUMBER>``   +CC international (8-15 digits); North American (NXX) NXX-XXXX;
                                     national with a trunk 0 and separators (9-12 digits); any
                                     number after "phone", "tel", "mobile", "fax", "call"
ip_address      ``<IP_ADDRESS>``     IPv4 and IPv6 in public (global) space; private, loopback,
                                     link-local, documentation (192.0.2.x, 2001:db8::) and other
                                     reserved ranges, and the public DNS resolvers (8.8.8.8,
                                     1.1.1.1...) are not personal, unless ``private_ips``
credit_card     ``<CREDIT_CARD>``    13-19 digits, plain or in groups of 4 (Amex 4-6-5), with a
                                     known issuer prefix and length and a valid Luhn checksum
iban            ``<IBAN>``           a country code, the country's IBAN length, valid mod-97
api_key         ``<API_KEY>``        prefixed tokens (AWS AKIA/ASIA, GitHub ghp_/github_pat_,
                                     OpenAI/Anthropic sk-, Slack xox*, Google AIza, Stripe
                                     sk_live_, Hugging Face hf_, npm, JWTs), private key blocks,
                                     and random-looking values assigned to a key, token, secret or
                                     password name (``api_key = "..."``, ``Bearer ...``); not
                                     placeholders (YOUR_API_KEY, AKIAIOSFODNN7EXAMPLE, <token>)
==============  ===================  ==============================================================

A version (1.2.3, 10.0.19041.1), a date, an ISBN, a UUID, a hash or a numeric id is none of these:
the patterns refuse a neighbouring digit, dot or dash, and checksums, issuer tables and ranges
filter the rest. :func:`find` returns non-overlapping :class:`Match` es (when two overlap, the kind
earlier in :data:`KINDS` wins, then the longer); :func:`redact` replaces them with placeholders;
:func:`mask` shows a few characters of a match, so that evidence is no leak itself.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from typing import Callable, Iterable, NamedTuple

KINDS = ("api_key", "email", "iban", "credit_card", "ip_address", "phone")  # also the order of precedence
PLACEHOLDERS = {"email": "<EMAIL_ADDRESS>", "phone": "<PHONE_NUMBER>", "ip_address": "<IP_ADDRESS>",
                "credit_card": "<CREDIT_CARD>", "iban": "<IBAN>", "api_key": "<API_KEY>"}


class Match(NamedTuple):
    kind: str
    rule: str  # which pattern: "ipv4", "github", "assignment", ...
    start: int
    end: int


# -- e-mail --------------------------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))(?![\w-]|\.[A-Za-z0-9])")
_EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", "example.edu")
_RESERVED_TLDS = {"example", "test", "invalid", "localhost", "local"}
_FILE_TLDS = {"png", "jpg", "jpeg", "gif", "svg", "webp", "js", "ts", "css", "json", "html", "txt", "pdf"}  # not .py, .md: countries


def _email(text: str, m: re.Match) -> str | None:
    domain, tld = m.group(1).lower(), m.group(2).lower()
    if text.startswith(":", m.end()) and m.end() + 1 < len(text) and not text[m.end() + 1].isspace():
        return None  # git@github.com:org/repo.git: an SSH remote, user@host:path
    if tld in _RESERVED_TLDS or tld in _FILE_TLDS or any(domain == d or domain.endswith("." + d) for d in _EXAMPLE_DOMAINS):
        return None
    return "email"


# -- phone numbers -------------------------------------------------------------------------------
_EDGE_L, _EDGE_R = r"(?<![\w+.\-/])", r"(?![\w]|[.\-/]\d)"
_PHONE = re.compile(
    rf"{_EDGE_L}(?P<intl>\+[1-9](?:[ .\-]?\(?\d{{1,5}}+\)?){{2,7}}+){_EDGE_R}"
    rf"|{_EDGE_L}(?P<nanp>(?:1[ .\-])?(?:\([2-9]\d\d\) ?|[2-9]\d\d([ .\-]))[2-9]\d\d(?(3)\3|[ .\-])\d{{4}}){_EDGE_R}"
    rf"|{_EDGE_L}(?P<trunk>0\d{{1,4}}(?P<sep>[ \-/.])\d{{2,8}}(?:(?P=sep)\d{{2,8}}){{0,4}}){_EDGE_R}"
    r"|(?i:\b(?:tel(?:ephone)?|phone|mobile|cell|fax|whatsapp|call(?: me)?(?: at| on)?)\b)\.?(?: (?:no\.?|number))?[ :#]*(?P<ctx>\+?\(?\d[\d ().\-]{5,18}\d)"
    rf"{_EDGE_R}")


_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")
_DATE_SHAPE = re.compile(r"\d{4}([./\-])\d\d?\1\d\d?|\d\d?([./\-])\d\d?\2\d{4}")


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def _phone(text: str, m: re.Match) -> tuple[str, int, int] | None:
    rule = next(r for r in ("intl", "nanp", "trunk", "ctx") if m.group(r) is not None)
    lo, hi = {"intl": (8, 15), "nanp": (10, 11), "trunk": (9, 12), "ctx": (7, 15)}[rule]
    if rule == "trunk" and _SSN_SHAPE.fullmatch(m.group(rule)):
        return None  # 078-05-1120: the shape of a US social security number, never a phone's
    if rule == "ctx" and _DATE_SHAPE.fullmatch(m.group(rule)):
        return None  # "call on 2024-01-15"
    return (rule, *m.span(rule)) if lo <= _digits(m.group(rule)) <= hi else None


# -- IP addresses --------------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.\-]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?[\w\-])")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}+[0-9A-Fa-f]{0,4}(?![\w:]|\.\d)")
_VERSION_WORD = re.compile(r"(?i)\b(?:version|ver|release|build|v)\.?\s*$")
PUBLIC_DNS = frozenset(("8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112", "208.67.222.222",
                        "208.67.220.220", "2001:4860:4860::8888", "2001:4860:4860::8844", "2606:4700:4700::1111",
                        "2606:4700:4700::1001"))


def _ip(text: str, m: re.Match, private: bool) -> str | None:
    s = m.group(0)
    if ":" in s and (not any(c.isdigit() for c in s) or sum(1 for g in s.split(":") if g) < 3):
        return None  # "dead::beef", "a[1::2]": names and slices, not addresses
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        return None
    if addr.version == 4 and _VERSION_WORD.search(text, max(0, m.start() - 12), m.start()):
        return None
    if not private and (not addr.is_global or addr.is_multicast or addr.is_reserved or str(addr) in PUBLIC_DNS):
        return None
    return f"ipv{addr.version}"


# -- credit cards ----------------------------------------------------------------------------------
_CARD = re.compile(r"(?<![\w.,+\-])(?:\d{4}([ \-])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?|\d{4}([ \-])\d{6}\2\d{4,5}|\d{13,19})(?![\w]|[.,\-]\d)")


def luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_network(digits: str) -> str | None:
    """The issuer network a card number's prefix (IIN) and length belong to, if any."""
    n, p2, p4 = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return "visa" if n in (13, 16, 19) else None
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return "mastercard" if n == 16 else None
    if p2 in (34, 37):
        return "amex" if n == 15 else None
    if p4 == 6011 or p2 == 65 or 644 <= int(digits[:3]) <= 649:
        return "discover" if 16 <= n <= 19 else None
    if 3528 <= p4 <= 3589:
        return "jcb" if 16 <= n <= 19 else None
    if p2 in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return "diners" if 14 <= n <= 19 else None
    if p2 == 62:
        return "unionpay" if 16 <= n <= 19 else None
    if p2 == 50 or 56 <= p2 <= 69:
        return "maestro" if 13 <= n <= 19 else None
    return None


def _card(text: str, m: re.Match) -> str | None:
    digits = re.sub(r"\D", "", m.group(0))
    return card_network(digits) if luhn(digits) else None


# -- IBAN ----------------------------------------------------------------------------------------------
IBAN_LENGTHS = dict(
    AD=24, AE=23, AL=28, AT=20, AZ=28, BA=20, BE=16, BG=22, BH=22, BI=27, BR=29, BY=28, CH=21, CR=22, CY=28, CZ=24,
    DE=22, DJ=27, DK=18, DO=28, EE=20, EG=29, ES=24, FI=18, FK=18, FO=18, FR=27, GB=22, GE=22, GI=23, GL=18, GR=27,
    GT=28, HR=21, HU=28, IE=22, IL=23, IQ=23, IS=26, IT=27, JO=30, KW=30, KZ=20, LB=28, LC=32, LI=21, LT=20, LU=20,
    LV=21, LY=25, MC=27, MD=24, ME=22, MK=19, MN=20, MR=27, MT=31, MU=30, NI=28, NL=18, NO=15, OM=23, PK=24, PL=28,
    PS=29, PT=25, QA=29, RO=24, RS=22, RU=33, SA=24, SC=31, SD=18, SE=24, SI=19, SK=24, SM=27, SO=23, ST=25, SV=28,
    TL=23, TN=24, TR=26, UA=29, VA=22, VG=24, XK=20, YE=30,
)
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w])")


def iban_valid(compact: str) -> bool:
    """``compact`` (no spaces) has its country's length and passes the mod-97 check."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _iban(text: str, m: re.Match) -> tuple[str, int] | None:
    """Also trims a candidate that ran into the next word: (rule, end)."""
    s, length = m.group(0), IBAN_LENGTHS.get(m.group(0)[:2])
    if length is None:
        return None
    kept, end = 0, m.start()
    for i, c in enumerate(s):
        kept += c != " "
        if kept == length:
            end = m.start() + i + 1
            break
    if kept < length or not iban_valid(text[m.start():end].replace(" ", "")):
        return None
    return "iban", end


# -- API keys, tokens, private keys ------------------------------------------------------------------
TOKEN_RULES = {  # rule -> (literals one of which a match holds: the cheap test first, pattern)
    "aws": (("AKIA", "ASIA", "ABIA", "ACCA"), r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    "github": (("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,255})\b"),
    "openai": (("sk-",), r"(?<![\w-])sk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_\-]{20,}(?![\w-])"),
    "slack": (("xox", "hooks.slack.com"), r"\bxox[abposre]-[0-9A-Za-z\-]{10,}|https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}"),
    "google": (("AIza",), r"\bAIza[0-9A-Za-z_\-]{35}(?![\w-])"),
    "stripe": (("_live_", "_test_"), r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{20,}\b"),
    "huggingface": (("hf_",), r"\bhf_[A-Za-z0-9]{30,}\b"),
    "npm": (("npm_",), r"\bnpm_[A-Za-z0-9]{36}\b"),
    "jwt": (("eyJ",), r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    "private_key": (("PRIVATE KEY",), r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
                    r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)"),
}
# the name around the word is bounded: an unbounded one costs quadratic time on a long identifier
_SECRET_NAME = r"[A-Za-z0-9_\-]{0,40}?(?:api[_\-]?key|apikey|secret|token|passw(?:or)?d|access[_\-]?key|auth[_\-]?key|credentials?)[A-Za-z0-9_\-]{0,40}"
_ASSIGNED = re.compile(
    rf"(?i)(?:(?<![\w\-]){_SECRET_NAME}[\"']?\s*(?::=|=>|[:=])\s*(?P<q>[\"']?)|\bbearer\s+(?P<b>))"
    r"(?P<v>[A-Za-z0-9_\-+/=.~]{16,512})(?(q)(?P=q)|(?![\w\-+/=.~]))")
_SECRET_WORDS = ("key", "secret", "token", "passw", "bearer", "credential")
_PLACEHOLDER = re.compile(r"(?i)your|example|xxxx|placeholder|changeme|dummy|redacted|sample|fake|test_?key|\*{3}|\.{3}|^(.)\1+$")
_DOTTED_NAME = re.compile(r"^[A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)+$")


def entropy(s: str) -> float:
    """Shannon entropy of ``s`` in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def random_enough(value: str) -> bool:
    """A value that looks generated: letters and digits mixed, no placeholder words, no path or
    dotted name, at least 3 bits of entropy per character."""
    if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return False
    if _PLACEHOLDER.search(value) or _DOTTED_NAME.match(value) or value.count("/") > 2:
        return False
    return entropy(value) >= 3.0


_TOKENS = re.compile("|".join(f"(?P<{rule}>{rx})" for rule, (_, rx) in TOKEN_RULES.items()))
_TOKEN_LITERALS = tuple(x for lits, _ in TOKEN_RULES.values() for x in lits)


def _token(text: str, m: re.Match) -> str | None:
    rule = m.lastgroup or ""
    if rule == "openai" and not random_enough(m.group(0)[3:]):
        return None  # sk-learn-compatible-estimator-wrapper
    if rule not in ("jwt", "private_key") and _PLACEHOLDER.search(m.group(0)):
        return None  # AKIAIOSFODNN7EXAMPLE (AWS's documentation), sk-your-key-here...
    return rule


def _assigned(text: str, m: re.Match) -> tuple[str, int, int] | None:
    value = m.group("v")
    if not random_enough(value):
        return None
    return ("bearer" if m.group("b") is not None else "assignment"), m.start("v"), m.end("v")


# -- finding -----------------------------------------------------------------------------------------
# Cheap tests that a text may hold a kind at all: a literal first character lets re skip ahead
_LONG_DIGITS = re.compile(r"\d[\d ().\-/]{5,}\d").search  # a phone, a card or an IBAN has one
_V4_HINT = re.compile(r"\.\d{1,3}\.\d{1,3}\.").search
_V6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:").search


class Scan(NamedTuple):
    kind: str
    hint: Callable[[str], object]  # a cheap test: false when the pattern cannot match
    pattern: re.Pattern
    judge: Callable[[str, re.Match], object]  # the rule, (rule, end), (rule, start, end), or None: no match


def _has(*literals: str) -> Callable[[str], bool]:
    return lambda text: any(x in text for x in literals)


def _secret_words(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in _SECRET_WORDS)


def _scans(kind: str, private_ips: bool) -> list[Scan]:
    if kind == "email":
        return [Scan(kind, _has("@"), _EMAIL, _email)]
    if kind == "ip_address":
        judge = lambda t, m: _ip(t, m, private_ips)  # noqa: E731
        return [Scan(kind, _V4_HINT, _IPV4, judge), Scan(kind, _V6_HINT, _IPV6, judge)]
    if kind == "api_key":
        return [Scan(kind, _has(*_TOKEN_LITERALS), _TOKENS, _token), Scan(kind, _secret_words, _ASSIGNED, _assigned)]
    pattern, judge = {"phone": (_PHONE, _phone), "credit_card": (_CARD, _card), "iban": (_IBAN, _iban)}[kind]
    return [Scan(kind, _LONG_DIGITS, pattern, judge)]


class Detector:
    """The detectors of ``kinds`` (default all), compiled once; :meth:`find` per text."""

    def __init__(self, kinds: Iterable[str] = KINDS, private_ips: bool = False) -> None:
        wanted = set(kinds)
        unknown = wanted - set(KINDS)
        if unknown:
            raise ValueError(f"unknown PII kind {sorted(unknown)[0]!r}; expected some of {', '.join(KINDS)}")
        self.kinds = [k for k in KINDS if k in wanted]
        self.scans = [s for k in self.kinds for s in _scans(k, private_ips)]

    def find(self, text: str) -> list[Match]:
        found: list[Match] = []
        hints: dict[int, object] = {}  # one test, shared by the scans that ask it (the digit run)
        for scan in self.scans:
            key = id(scan.hint)
            if key not in hints:
                hints[key] = bool(text) and scan.hint(text)
            if not hints[key]:
                continue
            for m in scan.pattern.finditer(text):
                got = scan.judge(text, m)
                if got is None:
                    continue
                rule, start, end = (got, m.start(), m.end()) if isinstance(got, str) else \
                    ((got[0], m.start(), got[1]) if len(got) == 2 else got)
                found.append(Match(scan.kind, rule, start, end))
        return _without_overlaps(found)


def _without_overlaps(found: list[Match]) -> list[Match]:
    """Keep the earlier kind of KINDS (then the longer match) where two overlap; in text order."""
    if len(found) < 2:
        return found
    order = {k: i for i, k in enumerate(KINDS)}
    kept: list[Match] = []
    for m in sorted(found, key=lambda m: (order[m.kind], m.start - m.end, m.start)):
        if all(m.end <= k.start or m.start >= k.end for k in kept):
            kept.append(m)
    return sorted(kept, key=lambda m: m.start)


def find(text: str, kinds: Iterable[str] = KINDS, private_ips: bool = False) -> list[Match]:
    """The PII of ``kinds`` in ``text``, in text order, not overlapping."""
    return Detector(kinds, private_ips).find(text)


def redact(text: str, matches: Iterable[Match]) -> str:
    """``text`` with each match replaced by its kind's placeholder."""
    out, pos = [], 0
    for m in sorted(matches, key=lambda m: m.start):
        out.append(text[pos:m.start])
        out.append(PLACEHOLDERS[m.kind])
        pos = m.end
    out.append(text[pos:])
    return "".join(out)


_SHOWN = {"email": (1, 4), "phone": (3, 2), "ip_address": (3, 0), "credit_card": (0, 4), "iban": (4, 2), "api_key": (4, 0)}


def mask(kind: str, text: str) -> str:
    """A few characters of ``text`` and an ellipsis, never more than a third of it
    (``"j….com"``, ``"…1111"``, ``"AKIA…"``)."""
    head, tail = _SHOWN.get(kind, (2, 2))
    while head + tail > len(text) // 3 and head + tail:
        head, tail = max(head - 1, 0), max(tail - 1, 0) if tail > head else tail
    return text[:head] + "\u2026" + (text[-tail:] if tail else "")
