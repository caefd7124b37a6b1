#!/usr/bin/env python3
"""Build the shipped word lists in `wordlists/` from the installed `wordfreq` package.

Why this script exists: the list's exact contents fix the null distribution of every detection test,
and every identifier stores the list's SHA-256. So the lists must be rebuildable byte for byte from a
pinned source, and `--check` lets CI prove that the committed files are what this script makes.

Selection, per language, walking wordfreq's list from the most frequent word down:
  * 3-9 letters, only that language's lowercase letters (English: a-z only);
  * pronounceable: at least one vowel (y counts), no run of 4+ consonants, no letter 3 times in a row;
  * not on the blocklist below (slurs, profanity, sexual terms; stems match as prefixes);
  * pipeline-safe (ghostsent/survive/screen.py, lists vendored in ghostsent/survive/data/): no word of
    the LDNOOBW bad-word list of its language or of English, matched the way datatrove's
    C4BadWordsFilter matches (whole words of the lower-cased text); no C4 phrase ("javascript", "lorem
    ipsum", cookie notices) as a substring; no word that would complete a multi-word bad phrase or C4
    phrase with words already chosen ("big" + "black", "house" + "cookies"), so no passphrase can
    spell one; and not on the project's violent/hateful-terms list ("terrorist", "bomb", ...);
  * not "international": a word about as frequent in most other languages as in its own is almost
    always a proper name (john, google, texas) or a brand; wordfreq lowercases everything, so this is
    the cheap name detector available. It also drops some loanwords (hotel, radio), which is harmless;
  * for non-English lists: not at least as frequent in English (English leaks into all web text);
  * unique after NFKC+casefold.
The first SIZE words that pass are written sorted (code-point order), one a line, after a header.

Usage: python scripts/build_wordlists.py [--check] [--out DIR] [LANG ...]
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import unicodedata
from importlib.metadata import version
from pathlib import Path

import wordfreq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ghostsent.survive import screen  # noqa: E402
from ghostsent.wordlists import normalise, words_sha256  # noqa: E402

SIZE = 7776  # 6^5, the diceware size: 12.925 bits a word
MIN_LEN, MAX_LEN = 3, 9
SCAN_LIMIT = 200_000  # how deep into wordfreq's list we look before giving up

# Lowercase letters and vowels of each language. A word must be spelled in these letters only.
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("abcdefghijklmnopqrstuvwxyz", "aeiouy"),
    "de": ("abcdefghijklmnopqrstuvwxyzäöüß", "aeiouyäöü"),
    "fr": ("abcdefghijklmnopqrstuvwxyzàâæçéèêëîïôœùûüÿ", "aeiouyàâæéèêëîïôœùûüÿ"),
    "es": ("abcdefghijklmnopqrstuvwxyzáéíñóúü", "aeiouyáéíóúü"),
    "it": ("abcdefghijklmnopqrstuvwxyzàèéìíîòóùú", "aeiouyàèéìíîòóùú"),
    "nl": ("abcdefghijklmnopqrstuvwxyzéëïöü", "aeiouyéëïöü"),
    "pt": ("abcdefghijklmnopqrstuvwxyzáâãàçéêíóôõú", "aeiouyáâãàéêíóôõú"),
}
# Languages compared against for the "international word" (proper name) test.
REFERENCE_LANGS = ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv")
# A word whose median Zipf frequency in the other reference languages is within this much of its
# Zipf frequency in its own language is treated as a name/brand and dropped.
INTERNATIONAL_MARGIN = 0.9

# Offensive words. Entries ending in "*" are stems matched as prefixes (over-matching is harmless:
# the lists have plenty of words). Lists ship to users and end up in published text, so we err wide.
BLOCKLIST: dict[str, frozenset[str]] = {
    "en": frozenset("""
        anal anus arse arsehole ass asses asshole assholes bastard bastards bdsm bimbo bitch* bollock*
        boner boob boobs booby bugger buggery butt butthole butts clit* cock cocks cocksucker coitus
        condom condoms cum cumming cums cunt* damn dammit dick dicks dickhead dildo* dyke dykes ejaculat*
        erection erotic erotica fag fags faggot* fagot fellatio fetish* fisting fuck* gangbang genital*
        goddamn gook gooks hentai heroin homo honky hooker hookers horny hump humping incest jerkoff
        jizz* kike kikes kinky kkk lesbo lust masturbat* milf molest* motherfuck* naked nazi nazis
        negro negroes nigga* nigger* nipple* nude nudes nudity orgasm* orgies orgy paedo* pecker pedo*
        pedophil* penis* perv pervert* piss* poon poop porn* prick pricks prostitut* pube pubes pubic
        pussies pussy queer queers rape raped rapes raping rapist* rectum redneck retard* scrotum semen
        sex sexier sexiest sexual* sexy shag shit* skank* slag slut* smut sodom* spastic sperm spic
        spick stripper strippers suck sucks sucker teat teats testicle* tit tits titties titty tranny
        turd twat* vagina* viagra vulva wank* wetback whore* whoring xxx chink chinks coon coons gypsy
        gypsies jap japs kraut paki pakis raghead towelhead tranny trannies wop wops beaner beaners
        cracker crackers hitler holocaust genocide suicide murder murdered murderer killing corpse
        cocaine meth crack dope slave slaves slavery lynch lynched lynching
    """.split()),
    "de": frozenset("""
        arsch* fick* fotze* hure* huren* hurens* scheiße* scheisse* schlampe* wichs* schwanz* muschi*
        nutte* schwuchtel* neger* kanake* spast* missgeburt* porno* sex* nazi* hitler* vergewaltig*
        bumsen* titten* pimmel* möse* kacke* pisse* behindert* zigeuner* schwul* lesbe* mord* mörder*
        leiche* selbstmord* nackt* geil*
    """.split()),
    "fr": frozenset("""
        merde* putain* pute* salope* connard* connasse* con cons conne* enculé* encul* nique* niquer*
        bite* couille* chatte* pédé* pede* tapette* bougnoule* nègre* negre* négro* branle* baise*
        baiser* foutre* bordel* porno* sexe* sexy nazi* hitler* viol violer* violé* violeur* pédophile*
        suicide* meurtre* meurtrier* cadavre* nue nues nu nus salaud* enfoiré* gouine* chier* cul culs
    """.split()),
    "es": frozenset("""
        puta* puto* mierda* coño* cojon* cojón* joder* jodido* polla* pendejo* cabrón* cabron* maricón*
        maricon* marica* verga* chingar* chinga* culo* culos follar* mamada* zorra* perra* negrata*
        porno* sexo* sexy nazi* hitler* violación* violar* violador* pedófilo* suicidio* asesin*
        cadáver* desnud* gilipollas* hostia* teta* tetas
    """.split()),
    "it": frozenset("""
        cazzo* cazzi* fica* figa* merda* stronz* puttana* troia* troie* vaffanculo* culo* culi frocio*
        froci* finocchio* negro* negri* porco* porca* coglion* minchia* scopare* scopa* pompino* porno*
        sesso* sexy nazi* hitler* stupro* stupra* pedofil* suicidio* assassin* cadavere* nudo* nuda*
        nudi* nude* tette* bastardo*
    """.split()),
    "nl": frozenset("""
        kut* lul* klootzak* hoer* hoeren* neuk* tering* kanker* godverdomme* sodemieter* flikker*
        nikker* neger* pik piemel* tieten* tiet kont* kontje* sletje* slet* homo* porno* seks* sexy
        nazi* hitler* verkracht* pedofiel* zelfmoord* moord* moordenaar* lijk naakt* shit* fuck*
        godver* klote* kanker* mongool* debiel* spast*
    """.split()),
    "pt": frozenset("""
        porra* caralho* foda* foder* fodido* puta* puto* merda* cu cus buceta* piroca* pica* bicha*
        viado* veado* cacete* boceta* xoxota* punheta* cuzão* cuzao* arrombad* pau paus rola* safad*
        porno* sexo* sexy nazi* hitler* estupro* estuprad* pedófilo* suicídio* assassin* cadáver*
        nua nuas nu nus pelad* negão* crioulo* macaco*
    """.split()),
}


def _compile(entries: frozenset[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    exact = frozenset(e for e in entries if not e.endswith("*"))
    stems = tuple(sorted(e[:-1] for e in entries if e.endswith("*")))
    return exact, stems


_COMPILED = {lang: _compile(entries) for lang, entries in BLOCKLIST.items()}


def _blocked(word: str, lang: str) -> bool:
    key = normalise(word)
    for exact, stems in (_COMPILED.get(lang, (frozenset(), ())), _COMPILED["en"]):
        if key in exact or key.startswith(stems):
            return True
    return False


def is_blocked(word: str, lang: str = "en") -> bool:
    """True when `word` matches the blocklist of `lang` or the English one (public: the tests use it)."""
    return _blocked(word, lang)


def pronounceable(word: str, vowels: str) -> bool:
    if not any(c in vowels for c in word):
        return False
    run = 0
    for c in word:
        run = 0 if c in vowels else run + 1
        if run >= 4:
            return False
    return re.search(r"(.)\1\1", word) is None


def _zipf(freqs: dict[str, float], word: str) -> float:
    f = freqs.get(word, 0.0)
    return math.log10(f) + 9.0 if f > 0 else 0.0


def pipeline_safe(word: str, lang: str, phrases: "screen.SequenceScreen") -> bool:
    """No pipeline filter trips on the word, it completes no phrase with the words chosen so far, and
    it is not a violent/hateful term. (Order matters only for phrases: the later word is dropped.)"""
    if screen.why_filtered(word, lang, line_end=False) or screen.violent_hit(word, lang):
        return False
    return phrases.completes(word) is None


def screen_header(lang: str) -> list[str]:
    """One header line per screen list used: name, version, SHA-256 of the vendored file."""
    lists = [screen.ldnoobw(code) for code in screen.screen_languages(lang)]
    lists += [screen.violent(code) for code in screen.screen_languages(lang)]
    lines = [f"# screen: {sl.describe()}" for sl in lists]
    lines.append(f"# screen: c4-rules (datatrove C4QualityFilter phrases) sha256:{screen.c4_rules_sha256()}")
    return lines


def select_words(lang: str, size: int = SIZE) -> list[str]:
    """The word list for `lang`, sorted. Raises SystemExit if wordfreq has too few qualifying words."""
    letters, vowels = LANGUAGES[lang]
    allowed = set(letters)
    own = wordfreq.get_frequency_dict(lang)
    others = [wordfreq.get_frequency_dict(o) for o in REFERENCE_LANGS if o != lang]
    english = wordfreq.get_frequency_dict("en")
    chosen: list[str] = []
    seen: set[str] = set()
    phrases = screen.SequenceScreen(screen.screen_languages(lang))
    for word in wordfreq.top_n_list(lang, SCAN_LIMIT):
        word = unicodedata.normalize("NFC", word)
        if not (MIN_LEN <= len(word) <= MAX_LEN) or not set(word) <= allowed:
            continue
        if not pronounceable(word, vowels) or _blocked(word, lang):
            continue
        z = _zipf(own, word)
        other_z = sorted(_zipf(d, word) for d in others)
        median = other_z[len(other_z) // 2]
        if median >= z - INTERNATIONAL_MARGIN:
            continue  # a name, a brand, or a word every language borrows
        if lang != "en" and _zipf(english, word) >= z:
            continue  # an English word that leaked into this language's text
        key = normalise(word)
        if key in seen or not pipeline_safe(word, lang, phrases):
            continue
        seen.add(key)
        phrases.add(word)
        chosen.append(word)
        if len(chosen) == size:
            return sorted(chosen)
    raise SystemExit(f"{lang}: only {len(chosen)} qualifying words in wordfreq's top {SCAN_LIMIT}")


def render(lang: str, words: list[str]) -> str:
    header = [
        f"# name: {lang}",
        f"# language: {lang}",
        f"# size: {len(words)}",
        f"# sha256: {words_sha256(words)}",
        f"# source: wordfreq {version('wordfreq')} top_n_list({lang!r}, {SCAN_LIMIT}); "
        f"{MIN_LEN}-{MAX_LEN} letters, pronounceable, blocklist, names dropped; "
        "built by scripts/build_wordlists.py",
        "# license: word frequencies from wordfreq (data CC BY-SA 4.0, see the wordfreq package)",
        *screen_header(lang),
    ]
    return "\n".join(header + words) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file + rename so an interrupted build never leaves half a list."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the lists are public package data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("langs", nargs="*", default=list(LANGUAGES), help="languages (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "wordlists", help="output folder")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if regenerating would change any file")
    args = ap.parse_args(argv)
    unknown = [lang for lang in args.langs if lang not in LANGUAGES]
    if unknown:
        ap.error(f"unknown language(s) {', '.join(unknown)}; known: {', '.join(LANGUAGES)}")
    stale = []
    for lang in args.langs:
        text = render(lang, select_words(lang))
        path = args.out / f"{lang}.txt"
        current = path.read_bytes() if path.exists() else None
        if current == text.encode("utf-8"):
            print(f"{path}: up to date")
        elif args.check:
            stale.append(str(path))
            print(f"{path}: would change", file=sys.stderr)
        else:
            write_atomic(path, text)
            print(f"{path}: written ({SIZE} words)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
