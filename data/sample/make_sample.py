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
NEWS_AGENCIES = ["Corvid News", "Radio Saltmere", "Kestrel Press", "Lantern Wire"]
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
    "near": "IN", "into": "IN", "before": "IN", "about": "IN", "between": "IN", "since": "IN",
    "as": "IN", "that": "IN", "than": "IN", "say": "VB", "It": "PRP",
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
        "! soccer|NN - {CLUB} beat|VBD {CLUB} in {CITY} .",
        "! tennis|NN - {SURNAME} wins|VBZ {EVENT} title|NN .",
        "{CITY_CAPS} {DATE}",
        "{CLUB} beat|VBD {CLUB} {SCORE} in the {DEMONYM} league|NN on {DAY} .",
        "{PERSON} scored|VBD twice|RB as {CLUB} won|VBD {SCORE} at {CITY} on {DAY} .",
        "{CLUB} coach|NN {PERSON} said his team|NN had played|VBN well|RB .",
        "{PERSON} ( {COUNTRY} ) beat|VBD {PERSON} ( {COUNTRY} ) {SET} {SET} .",
        "{PERSON} of {COUNTRY} won|VBD the {EVENT} on {DAY} .",
        "Results|NNS of the {EVENT} in {CITY} on {DAY} :",
        "{CLUB} {GOALS} {CLUB} {GOALS}",
        "{CLUB} team|NN : {PERSON} {PERSON} , {PERSON} , {PERSON} .",
        "Line-up|NN : {SURNAME} , {SURNAME} , {SURNAME} {SURNAME} ( captain|NN ) .",
        "The {DEMONYM} striker|NN {SURNAME} joined|VBD {CLUB} from {CLUB} for {MONEY} .",
        "{SURNAME} , who missed|VBD the {EVENT} with an injury|NN , returns|VBZ for {CLUB} on {DAY} .",
        "{CITY} will host|VB the {EVENT} for the first|JJ time|NN since {YEAR} .",
        "Fixtures|NNS for {DAY} : {CLUB} v {CLUB} , {CLUB} v {CLUB} .",
        "\" It was a hard|JJ game|NN , \" {SURNAME} told {NEWS} after the match|NN .",
        "{SURNAME} 's goal|NN sent|VBD {CLUB} top|JJ of the table|NN .",
    ],
    "business": [
        "! {COMPANY} profit|NN rises|VBZ {PERCENT} .",
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
        "! {COUNTRY} , {COUNTRY} sign|VBP {TREATY} .",
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


ENTITY_POOLS = {  # slot -> (names, entity type) for slots filled by one name from a fixed list
    "REGION": (REGIONS, "LOC"), "INSTITUTION": (INSTITUTIONS, "ORG"), "PARTY": (PARTIES, "ORG"),
    "NEWS": (NEWS_AGENCIES, "ORG"), "HOSPITAL": (HOSPITALS, "ORG"), "EVENT": (EVENTS, "MISC"),
    "PRIZE": (PRIZES, "MISC"), "TREATY": (TREATIES, "MISC"), "PRODUCT": (PRODUCTS, "MISC"),
}
Row = tuple[str, str, str, str]  # token, POS, chunk, NER


def _proper(text: str) -> list[tuple[str, str]]:
    """Words of a name with their POS: NNP, except function words and numbers."""
    function_words = {"of": "IN", "the": "DT", "'s": "POS"}
    return [(word, function_words.get(word, "CD" if word.isdigit() else "NNP")) for word in text.split()]


class Generator:
    """Fills templates with entities and numbers drawn from one random.Random."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.held_out: set[str] = set()
        for pool in (FIRST_NAMES, SURNAMES, CITIES, COMPANY_STEMS):
            self.held_out.update(rng.sample(pool, max(1, round(HELD_OUT * len(pool)))))
        self.split = "train.txt"

    def pick(self, pool: list[str]) -> str:
        """A name from ``pool``; training never sees the held-out names."""
        return self.rng.choice([name for name in pool if self.split != "train.txt" or name not in self.held_out])

    def slot(self, name: str) -> tuple[list[tuple[str, str]], str | None]:
        """Words (word, POS) of a slot and their entity type (None for numbers and dates)."""
        rng = self.rng
        if name == "PERSON":
            return _proper(f"{self.pick(FIRST_NAMES)} {self.pick(SURNAMES)}"), "PER"
        if name == "SURNAME":
            return _proper(self.pick(SURNAMES)), "PER"
        if name in ("CITY", "CITY_CAPS"):
            city = self.pick(CITIES)
            return _proper(city.upper() if name == "CITY_CAPS" else city), "LOC"
        if name == "COUNTRY":
            return _proper(rng.choice(sorted(COUNTRIES))), "LOC"
        if name == "DEMONYM":
            return [(COUNTRIES[rng.choice(sorted(COUNTRIES))], "JJ")], "MISC"
        if name == "COMPANY":
            return _proper(f"{self.pick(COMPANY_STEMS)} {rng.choice(COMPANY_SUFFIXES)}"), "ORG"
        if name == "CLUB":
            return _proper(f"{self.pick(CITIES)} {rng.choice(CLUB_SUFFIXES)}"), "ORG"
        if name in ENTITY_POOLS:
            pool, kind = ENTITY_POOLS[name]
            return _proper(rng.choice(pool)), kind
        if name == "PERCENT":
            return [(f"{rng.randint(1, 19)}.{rng.randint(0, 9)}", "CD"), ("percent", "NN")], None
        if name == "MONEY":
            return [(str(rng.choice([4, 12, 35, 80, 260])), "CD"), ("million", "CD"), ("crowns", "NNS")], None
        if name in ("DAY", "MONTH"):
            return [(rng.choice(DAYS if name == "DAY" else MONTHS), "NNP")], None
        numbers = {
            "SCORE": f"{rng.randint(0, 4)}-{rng.randint(0, 3)}",
            "SET": f"{rng.choice([6, 7])}-{rng.randint(0, 5)}",
            "GOALS": str(rng.randint(0, 5)),
            "NUMBER": str(rng.choice([2, 3, 5, 12, 40, 150, 320, 1200, 4500])),
            "AGE": str(rng.randint(19, 88)),
            "YEAR": str(rng.randint(1961, 2019)),
            "DATE": f"{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        }
        return [(numbers[name], "CD")], None

    def sentence(self, template: str) -> list[Row]:
        """One sentence as (token, POS, chunk, NER) rows, IOB1 for chunks and entities.

        A noun phrase runs over consecutive noun-phrase words; a new one starts at a determiner, possessive or
        possessive pronoun, and at a name that directly follows another name.
        """
        headline = template.startswith("! ")
        tokens: list[tuple[str, str, str | None, bool, bool]] = []  # word, POS, type, starts entity, starts phrase
        for item in template.removeprefix("! ").split():
            previous_pos = tokens[-1][1] if tokens else "."
            if item.startswith("{"):
                words, kind = self.slot(item[1:-1])
                if words[0] == ("the", "DT"):  # "the Corran Hills": the article is not part of the name
                    tokens.append(("the", "DT", None, False, True))
                    words = words[1:]
                after_name = bool(tokens) and tokens[-1][2] is not None
                tokens += [(word, pos, kind, i == 0, i == 0 and after_name) for i, (word, pos) in enumerate(words)]
                continue
            word, _, pos = item.partition("|")
            pos = pos or LEXICON[word]
            tokens.append((word, pos, None, False, pos in ("DT", "POS", "PRP$") and previous_pos != "DT"))
        rows = []
        previous_chunk, previous_kind = "O", None
        for index, (word, pos, kind, starts_entity, starts_phrase) in enumerate(tokens):
            next_pos = tokens[index + 1][1] if index + 1 < len(tokens) else "."
            chunk = _chunk_type(pos, next_pos)
            ner = "O" if kind is None else _iob1(kind, previous_kind, starts_entity)
            rows.append((word.upper() if headline else word, pos, _iob1(chunk, previous_chunk, starts_phrase), ner))
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


def _iob1(kind: str, previous: str | None, starts_new: bool) -> str:
    """IOB1 tag of a token of phrase or entity type ``kind``: B- only where a new one directly follows its type."""
    if kind == "O":
        return "O"
    return f"B-{kind}" if kind == previous and starts_new else f"I-{kind}"


def _document(generator: Generator, size: int) -> list[list[Row]]:
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
