"""Generate the bundled sample corpus: ``python data/sample/make_sample.py`` rewrites the files beside it.

Everything here was written for this project: the templates, and the names of the people, places,
organisations, events and products of an invented world. Nothing comes from CoNLL-2003 or any other corpus.
The output is fixed by ``SEED``; ``tests/test_conll.py`` checks that the committed files equal it.

Layout as in CoNLL-2003: ``token POS chunk NER`` separated by spaces, IOB1 entity and chunk tags (``B-`` only
where an entity directly follows one of the same type, as in the team line-ups), ``-DOCSTART- -X- -X- O``
before each document. Types: PER, LOC, ORG, MISC. Writes train.txt (400 sentences), dev.txt and test.txt (100
each) and raw.txt (untokenized text from the same world, for ``ner tag``).
"""

from __future__ import annotations

import random
from pathlib import Path

SEED = 2026
SPLIT_SIZES = {"train.txt": 400, "dev.txt": 100, "test.txt": 100}
HELD_OUT = 0.15  # share of each name pool seen only in dev and test, so unseen names get tested too

# --- the invented world -----------------------------------------------------------------------------------
FIRST_NAMES = (
    "Maren Oskar Talia Joren Ilsa Anselm Dessa Lio Tomas Veyra Hadrik Nessa Corin Petra Elias Runa Bastien "
    "Mirela Oren Saskia Teodor Livia Aurek Kasia Fenn Odile Jaro Selka Milo Brisa"
).split()
SURNAMES = (
    "Quist Velde Farrant Kroll Reyvik Drovic Verreck Maxley Solvane Hallow Brennik Ostrander Kavel Morrow "
    "Tessaly Varga Lindqvar Pell Okonde Raskin Delmar Suvanto Heskett Yarrow Castellan Imbre Voss Thorne "
    "Achterberg Navarrine"
).split()
COUNTRIES = {  # country -> demonym (MISC)
    "Ostravia": "Ostravian", "Velmora": "Velmoran", "Kethran": "Kethrani", "Sarvenne": "Sarvennese",
    "Orlind": "Orlindish", "Tamsk": "Tamskan", "Brevania": "Brevanian", "Duskmoor": "Duskmoorish",
}
CITIES = (
    "Versk Palmaro Quillon Hadrenne Lunsk Caravel Ederby Mistral Korvath Saltmere Ivenholt Dray Pellorn "
    "Ashgrove Tiberon Nolvik"
).split()
REGIONS = ["North Velmora", "the Corran Hills", "Lake Morvane", "Port Ellis", "the Greywater Valley", "East Tamsk"]
COMPANY_STEMS = "Kelmar Drovan Brightwell Astrel Norwind Halcyon Vantor Ribbeck Sorrel Ketterly Ombrel Fasso".split()
COMPANY_SUFFIXES = ["Holdings", "Steel", "Group", "Airlines", "Motors", "Energy", "Mining Corp", "Telecom"]
CLUB_SUFFIXES = ["United", "City", "Rovers", "Athletic", "Wanderers"]
INSTITUTIONS = [
    "Central Bank of Kethran", "Ostravian Rail Authority", "Ministry of Trade", "Harbour Workers Union",
    "Council of Northern States", "Velmora Stock Exchange", "Institute of Coastal Studies",
]
PARTIES = ["Liberal Alliance", "People 's Front", "Green Assembly", "Unity Party", "Farmers League"]
NEWS_AGENCIES = ["Corvid News", "the Daily Lantern", "Radio Saltmere", "Kestrel Press"]
HOSPITALS = ["St Alder Hospital", "Palmaro General Hospital", "Versk Clinic"]
EVENTS = ["Harvest Cup", "Northern Games", "Velmora Open", "Summer Regatta", "Lantern Festival", "Coastal Rally"]
PRIZES = ["Kestrel Prize", "Amber Quill Award", "Ostravian Book Prize"]
TREATIES = ["Tamsk Accord", "Saltmere Agreement", "Treaty of Dray"]
PRODUCTS = ["Skylark 700", "Osprey 12", "Heron XL", "Falconet 3"]
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February March April May June July August September October November December".split()

# Part-of-speech tags of the words the templates use without one (other words are written word|POS).
LEXICON = {
    "the": "DT", "a": "DT", "an": "DT", "The": "DT", "A": "DT", "this": "DT", "of": "IN", "in": "IN", "In": "IN",
    "on": "IN", "at": "IN", "for": "IN", "from": "IN", "with": "IN", "by": "IN", "after": "IN", "against": "IN",
    "near": "IN", "into": "IN", "between": "IN", "since": "IN", "as": "IN", "that": "IN", "than": "IN",
    "to": "TO", "and": "CC", "but": "CC", "said": "VBD", "says": "VBZ", "told": "VBD", "will": "MD",
    "would": "MD", "could": "MD", "must": "MD", "was": "VBD", "were": "VBD", "is": "VBZ", "has": "VBZ",
    "had": "VBD", "be": "VB", "been": "VBN", "did": "VBD", "it": "PRP", "he": "PRP", "she": "PRP", "they": "PRP",
    "we": "PRP", "We": "PRP", "his": "PRP$", "her": "PRP$", "its": "PRP$", "their": "PRP$", "our": "PRP$",
    "who": "WP", "when": "WRB", "not": "RB", "n't": "RB", "'s": "POS", ".": ".", ",": ",", ":": ":", "-": ":",
    "(": "(", ")": ")", '"': '"', "percent": "NN", "million": "CD", "crowns": "NNS", "v": "IN",
}

# Templates: words (POS from LEXICON, or word|POS) and slots in braces. "!" marks an all-caps headline.
TEMPLATES = {
    "sports": [
        "! SOCCER|NN - {CLUB} BEAT|VBD {CLUB} IN {CITY} .",
        "! TENNIS|NN - {SURNAME} WINS|VBZ {EVENT} TITLE|NN .",
        "{CITY_CAPS} {DATE}",
        "{CLUB} beat|VBD {CLUB} {SCORE} in the {DEMONYM} league|NN on {DAY} .",
        "{PERSON} scored|VBD twice|RB as {CLUB} won|VBD {SCORE} at {CITY} on {DAY} .",
        "{CLUB} coach|NN {PERSON} said his team|NN had played|VBN well|RB .",
        "{PERSON} ( {COUNTRY} ) beat|VBD {PERSON} ( {COUNTRY} ) {SET} {SET} .",
        "{PERSON} of {COUNTRY} won|VBD the {EVENT} on {DAY} .",
        "Results|NNS of the {EVENT} in {CITY} on {DAY} :",
        "{CLUB} {GOALS} {CLUB} {GOALS}",
        "{CLUB} team|NN : {PERSON} {PERSON} , {PERSON} , {PERSON} .",
        "Line-up|NN : {SURNAME} {SURNAME} {SURNAME} , {SURNAME} ( captain|NN ) .",
        "The {DEMONYM} striker|NN {SURNAME} joined|VBD {CLUB} from {CLUB} for {MONEY} .",
        "{SURNAME} , who missed|VBD the {EVENT} with an injury|NN , returns|VBZ for {CLUB} on {DAY} .",
        "{CITY} will host|VB the {EVENT} for the first|JJ time|NN since {YEAR} .",
        "Fixtures|NNS for {DAY} : {CLUB} v {CLUB} , {CLUB} v {CLUB} .",
        "\" It was a hard|JJ game|NN , \" {SURNAME} told {NEWS} after the match|NN .",
        "{SURNAME} 's goal|NN sent|VBD {CLUB} top|JJ of the table|NN .",
    ],
    "business": [
        "! {COMPANY} PROFIT|NN RISES|VBZ {PERCENT} .",
        "{COMPANY} said on {DAY} its net|JJ profit|NN rose|VBD {PERCENT} to {MONEY} .",
        "Shares|NNS in {COMPANY} fell|VBD {PERCENT} in {CITY} after the results|NNS .",
        "{COMPANY} will buy|VB {COMPANY} for {MONEY} , the companies|NNS said .",
        "{PERSON} , chief|JJ executive|NN of {COMPANY} , told reporters|NNS the deal|NN was good|JJ for {COUNTRY} .",
        "The {INSTITUTION} kept|VBD interest|NN rates|NNS unchanged|JJ at {PERCENT} .",
        "{DEMONYM} exports|NNS to {COUNTRY} grew|VBD {PERCENT} in {MONTH} , the {INSTITUTION} said .",
        "{COMPANY} plans|VBZ to open|VB a new|JJ plant|NN near {CITY} , employing|VBG {NUMBER} people|NNS .",
        "Analysts|NNS at {COMPANY} expect|VBP the {DEMONYM} crown|NN to weaken|VB against the {DEMONYM} mark|NN .",
        "{SURNAME} said {COMPANY} would not comment|VB on the report|NN .",
        "The {DEMONYM} airline|NN {COMPANY} ordered|VBD {NUMBER} {PRODUCT} jets|NNS .",
        "{COMPANY} , based|VBN in {CITY} , employs|VBZ {NUMBER} workers|NNS in {COUNTRY} .",
        "Trading|NN on the {INSTITUTION} was quiet|JJ on {DAY} , dealers|NNS said .",
        "\" We do|VBP n't expect|VB a recovery|NN before {MONTH} , \" said {PERSON} of {COMPANY} .",
        "{SURNAME} 's company|NN , {COMPANY} , lost|VBD {MONEY} last|JJ year|NN .",
    ],
    "politics": [
        "! {COUNTRY_CAPS} , {COUNTRY_CAPS} SIGN|VBP {TREATY} .",
        "{CITY_CAPS} {DATE}",
        "{DEMONYM} President|NNP {PERSON} arrived|VBD in {CITY} on {DAY} for talks|NNS .",
        "{PERSON} , the {DEMONYM} foreign|JJ minister|NN , said the {TREATY} must be respected|VBN .",
        "The {PARTY} won|VBD {NUMBER} seats|NNS in the election|NN in {COUNTRY} .",
        "Police|NNS in {CITY} arrested|VBD {NUMBER} people|NNS after protests|NNS against the {PARTY} .",
        "{COUNTRY} and {COUNTRY} signed|VBD the {TREATY} in {CITY} on {DAY} .",
        "\" We will not accept|VB this , \" {SURNAME} told {NEWS} .",
        "{SURNAME} 's party|NN , the {PARTY} , leads|VBZ in the polls|NNS .",
        "The {INSTITUTION} said {NUMBER} {DEMONYM} soldiers|NNS had crossed|VBN into {REGION} .",
        "{PERSON} , a spokesman|NN for the {INSTITUTION} , declined|VBD to comment|VB .",
        "Talks|NNS between {COUNTRY} and the {INSTITUTION} will resume|VB in {MONTH} .",
        "Prime|NNP Minister|NNP {PERSON} met|VBD {DEMONYM} leaders|NNS in {CITY} .",
        "{SURNAME} did n't say when the {INSTITUTION} would decide|VB .",
        "Voters|NNS in {REGION} backed|VBD {PERSON} of the {PARTY} .",
    ],
    "general": [
        "{CITY_CAPS} {DATE}",
        "Heavy|JJ rain|NN flooded|VBD parts|NNS of {REGION} and {CITY} on {DAY} .",
        "The {DEMONYM} writer|NN {PERSON} won|VBD the {PRIZE} for her novel|NN .",
        "{PERSON} , {AGE} , was born|VBN in {CITY} and lives|VBZ in {COUNTRY} .",
        "Flights|NNS from {CITY} to {CITY} were cancelled|VBN by {COMPANY} .",
        "The {EVENT} opens|VBZ in {CITY} next|JJ week|NN .",
        "Doctors|NNS at {HOSPITAL} said {SURNAME} was in a stable|JJ condition|NN .",
        "{NEWS} reported|VBD that {NUMBER} {DEMONYM} tourists|NNS were hurt|VBN in {CITY} .",
        "Researchers|NNS at the {INSTITUTION} found|VBD a new|JJ species|NN of fish|NN in {REGION} .",
        "{PERSON} 's film|NN about {CITY} won|VBD praise|NN at the {EVENT} .",
        "The road|NN between {CITY} and {CITY} reopened|VBD on {DAY} .",
        "{SURNAME} , a teacher|NN from {CITY} , said the storm|NN was the worst|JJS since {YEAR} .",
    ],
}


def _names(pool: list[str], held_out: set[str], split: str) -> list[str]:
    """The pool for ``split``: training never sees the held-out names."""
    return [name for name in pool if split != "train.txt" or name not in held_out]


class Generator:
    """Fills templates with entities drawn from one random.Random."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.held_out: set[str] = set()
        for pool in (FIRST_NAMES, SURNAMES, CITIES, COMPANY_STEMS):
            self.held_out.update(rng.sample(pool, max(1, round(HELD_OUT * len(pool)))))
        self.split = "train.txt"

    def pick(self, pool: list[str]) -> str:
        return self.rng.choice(_names(pool, self.held_out, self.split))

    def slot(self, name: str) -> tuple[list[tuple[str, str]], str | None]:
        """Tokens (word, POS) of a slot and their entity type (None for numbers and dates)."""
        rng = self.rng
        proper = lambda text: [(word, "IN" if word == "of" else "DT" if word == "the" else "POS" if word == "'s"
                                else "NNP") for word in text.split()]  # noqa: E731
        if name == "PERSON":
            return proper(f"{self.pick(FIRST_NAMES)} {self.pick(SURNAMES)}"), "PER"
        if name == "SURNAME":
            return proper(self.pick(SURNAMES)), "PER"
        if name in ("CITY", "CITY_CAPS"):
            city = self.pick(CITIES)
            return proper(city.upper() if name == "CITY_CAPS" else city), "LOC"
        if name in ("COUNTRY", "COUNTRY_CAPS"):
            country = rng.choice(sorted(COUNTRIES))
            return proper(country.upper() if name == "COUNTRY_CAPS" else country), "LOC"
        if name == "REGION":
            region = rng.choice(REGIONS)
            return proper(region.removeprefix("the ")), "LOC"
        if name == "DEMONYM":
            return [(COUNTRIES[rng.choice(sorted(COUNTRIES))], "JJ")], "MISC"
        if name == "COMPANY":
            return proper(f"{self.pick(COMPANY_STEMS)} {rng.choice(COMPANY_SUFFIXES)}"), "ORG"
        if name == "CLUB":
            return proper(f"{self.pick(CITIES)} {rng.choice(CLUB_SUFFIXES)}"), "ORG"
        simple = {
            "INSTITUTION": (INSTITUTIONS, "ORG"), "PARTY": (PARTIES, "ORG"), "NEWS": (NEWS_AGENCIES, "ORG"),
            "HOSPITAL": (HOSPITALS, "ORG"), "EVENT": (EVENTS, "MISC"), "PRIZE": (PRIZES, "MISC"),
            "TREATY": (TREATIES, "MISC"),
        }
        if name in simple:
            pool, kind = simple[name]
            return proper(rng.choice(pool).removeprefix("the ")), kind
        if name == "PRODUCT":
            model, number = rng.choice(PRODUCTS).split()
            return [(model, "NNP"), (number, "CD" if number.isdigit() else "NNP")], "MISC"
        numbers = {
            "SCORE": lambda: f"{rng.randint(0, 4)}-{rng.randint(0, 3)}",
            "SET": lambda: f"{rng.choice([6, 7])}-{rng.randint(0, 5)}",
            "GOALS": lambda: str(rng.randint(0, 5)),
            "NUMBER": lambda: str(rng.choice([2, 3, 5, 12, 40, 150, 320, 1200, 4500])),
            "AGE": lambda: str(rng.randint(19, 88)),
            "YEAR": lambda: str(rng.randint(1961, 2019)),
            "DATE": lambda: f"{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        }
        if name in numbers:
            return [(numbers[name](), "CD")], None
        if name == "PERCENT":
            return [(f"{rng.randint(1, 19)}.{rng.randint(0, 9)}", "CD"), ("percent", "NN")], None
        if name == "MONEY":
            return [(str(rng.choice([4, 12, 35, 80, 260])), "CD"), ("million", "CD"), ("crowns", "NNS")], None
        if name == "DAY":
            return [(rng.choice(DAYS), "NNP")], None
        if name == "MONTH":
            return [(rng.choice(MONTHS), "NNP")], None
        raise KeyError(f"unknown slot {{{name}}}")

    def sentence(self, template: str) -> list[tuple[str, str, str, str]]:
        """One sentence as (token, POS, chunk, NER) rows, IOB1 for chunks and entities."""
        headline = template.startswith("! ")
        tokens: list[tuple[str, str, str | None, bool]] = []  # word, POS, entity type, starts a phrase
        after_slot = False
        for item in template.removeprefix("! ").split():
            if item.startswith("{"):
                words, kind = self.slot(item[1:-1])
                tokens += [(word, pos, kind, position == 0) for position, (word, pos) in enumerate(words)]
                after_slot = True
                continue
            word, _, pos = item.partition("|")
            pos = pos or LEXICON[word]
            tokens.append((word, pos, None, after_slot or pos in ("DT", "POS", "PRP$")))
            after_slot = False
        rows = []
        previous_chunk, previous_kind = "O", None
        for index, (word, pos, kind, starts_phrase) in enumerate(tokens):
            next_pos = tokens[index + 1][1] if index + 1 < len(tokens) else "."
            chunk = _chunk_type(pos, next_pos)
            chunk_tag = _iob1(chunk, previous_chunk, starts_phrase)
            new_entity = kind is not None and starts_phrase and (kind != previous_kind or index == 0 or True)
            ner = "O" if kind is None else f"{'B' if new_entity and kind == previous_kind else 'I'}-{kind}"
            rows.append((word.upper() if headline else word, pos, chunk_tag, ner))
            previous_chunk, previous_kind = chunk, kind
        return rows


def _chunk_type(pos: str, next_pos: str) -> str:
    """Phrase type of a token from its POS tag (TO is a preposition before a noun phrase)."""
    if pos in ("DT", "JJ", "JJS", "NN", "NNS", "NNP", "NNPS", "CD", "PRP", "PRP$", "POS", "WP"):
        return "NP"
    if pos.startswith("VB") or pos == "MD" or (pos == "TO" and next_pos.startswith("VB")):
        return "VP"
    if pos in ("IN", "TO"):
        return "PP"
    if pos in ("RB", "WRB"):
        return "ADVP"
    return "O"


def _iob1(kind: str, previous: str, starts_phrase: bool) -> str:
    """IOB1 tag of a token of phrase type ``kind``: B- only where a new phrase directly follows one of its type."""
    if kind == "O":
        return "O"
    return f"B-{kind}" if kind == previous and starts_phrase else f"I-{kind}"


def _document(generator: Generator, size: int) -> list[list[tuple[str, str, str, str]]]:
    topic = generator.rng.choice(sorted(TEMPLATES))
    templates = TEMPLATES[topic]
    return [generator.sentence(generator.rng.choice(templates)) for _ in range(size)]


def generate() -> dict[str, str]:
    """File name -> text of every file this script writes."""
    generator = Generator(random.Random(SEED))
    files = {}
    for name, total in SPLIT_SIZES.items():
        generator.split = name
        blocks = []
        written = 0
        while written < total:
            size = min(generator.rng.randint(4, 12), total - written)
            blocks.append("-DOCSTART- -X- -X- O")
            blocks += ["\n".join(" ".join(row) for row in sentence) for sentence in _document(generator, size)]
            written += size
        files[name] = "\n\n".join(blocks) + "\n"
    files["raw.txt"] = RAW_TEXT
    return files


RAW_TEXT = """\
Maren Quist scored twice as Versk United beat Quillon City 3-1 on Saturday.
Kelmar Holdings said its profit rose 4.5 percent to 80 million crowns. Shares in the company rose in Palmaro.
"We don't expect a recovery before March," said Talia Farrant of Brightwell Energy.
The Ostravian foreign minister, Oskar Velde, arrived in Caravel on Monday for talks with Kethran.
Heavy rain flooded parts of the Corran Hills and Saltmere on Thursday.
Joren Maxley's film about Lunsk won praise at the Lantern Festival.
Velmora and Tamsk signed the Saltmere Agreement in Dray. The Unity Party said it would not accept it.

Doctors at St Alder Hospital said Reyvik was in a stable condition.
Corvid News reported that 12 Sarvennese tourists were hurt in Hadrenne.
Hadrenne Rovers coach Dessa Kroll said her team hadn't played well. "It was a hard game," Kroll told the Daily Lantern.
The Velmoran airline Norwind Airlines ordered 40 Skylark 700 jets.
Petra Ostrander of Orlind won the Velmora Open on Sunday.
Police in Ederby arrested 150 people after protests against the Liberal Alliance.
The Central Bank of Kethran kept interest rates unchanged at 3.2 percent.
Flights from Mistral to Ivenholt were cancelled by Astrel Airlines. Passengers waited for hours.
Drovic's company, Vantor Steel, lost 35 million crowns last year.
Researchers at the Institute of Coastal Studies found a new species of fish in Lake Morvane.
The Brevanian writer Saskia Lindqvar won the Kestrel Prize for her novel.
Prime Minister Hadrik Pell met Duskmoorish leaders in Nolvik; they didn't say when talks would resume.
Ashgrove will host the Harvest Cup for the first time since 1988.
"""


def main() -> None:
    folder = Path(__file__).parent
    for name, text in generate().items():
        (folder / name).write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {folder / name}")


if __name__ == "__main__":
    main()
