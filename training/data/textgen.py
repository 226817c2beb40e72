"""Text to speak: a seeded generator of everyday English, plus the user's own text files.

What a voice assistant hears and says: statements, questions and answers, numbers, prices, dates,
times, units and abbreviations ("2 lbs of flour", "Mr. and Mrs. Miller"), and small fictional
facts for retrieval exchanges ("In Oakhaven the sky is purple." -> "What colour is the sky in
Oakhaven?" -> "It's purple."). Fictional places keep retrieval honest: the answer can only come
from the context, never from what the backbone already knows.

Everything is drawn from a `random.Random` the caller seeds, so job i of a build always gets the
same text, which is what lets a killed build resume.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FIRST_NAMES = ("Alice Ben Carla David Elena Farid Grace Hiro Isabel Jamal Kate Liam Maya Noah Olga Priya "
               "Quinn Rosa Sam Tara Umar Vera Will Xenia Yusuf Zoe Martha Oscar Lena Tom Nina Pablo "
               "Ruth Victor Amara Chen Sofia Jonas Ingrid Mateo").split()
LAST_NAMES = ("Miller Smith Garcia Chen Okafor Novak Patel Jensen Rossi Kowalski Brown Nguyen Silva "
              "Fischer Murphy Tanaka Haddad Larsen Moreau Walsh Kim Schmidt Dubois Costa Ivanova").split()
TITLES = ("Mr.", "Mrs.", "Ms.", "Dr.", "Prof.")
CITIES = ("London Paris Berlin Madrid Chicago Boston Denver Seattle Toronto Dublin Lisbon Oslo Vienna "
          "Prague Sydney Tokyo Nairobi Lagos Cairo Mumbai Austin Portland Glasgow Leeds").split()
PLACE_HEADS = "Oak Ash Elm Stone Red Silver Fox Wolf Raven Mill Brook Frost Amber Thorn Willow Iron".split()
PLACE_TAILS = "haven ford field bridge wick moor dale port wood gate fall crest mere hollow".split()
COLOURS = "red blue green yellow purple orange pink grey silver golden white black".split()
FRUITS = "apples pears plums cherries mangoes peaches grapes lemons figs apricots".split()
FOODS = ("flour sugar rice butter coffee cheese pasta oats potatoes tomatoes carrots onions beans "
         "chicken salmon yoghurt milk tea").split()
DISHES = ("a vegetable curry|a mushroom risotto|tomato soup|a chicken stir-fry|lentil stew|fish tacos|"
          "a Greek salad|spaghetti with pesto|a bean chili|baked salmon with rice").split("|")
ANIMALS = "cat dog rabbit parrot horse goat hamster tortoise".split()
OBJECTS = ("keys|umbrella|phone charger|blue notebook|reading glasses|laptop|wallet|water bottle|"
           "library card|headphones").split("|")
ROOMS = "kitchen|living room|hallway|bedroom|garage|office|car".split("|")
ACTIVITIES = ("go running|bake bread|learn Spanish|paint the fence|visit my parents|clean the garage|"
              "plant tomatoes|fix the bike|watch a film|read a book|call the bank|walk the dog").split("|")
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = ("January February March April May June July August September October November "
          "December").split()
WEATHER = "sunny|cloudy|rainy|windy|foggy|cold and clear|warm and humid|snowing".split("|")
STREETS = "Maple Street|Church Road|Park Avenue|Hill Lane|River Road|King Street|Station Road".split("|")
RIVERS = "Amber|Silverrun|Tamsin|Ledder|Oxley|Brannock".split("|")
UNITS = (("lbs", "of"), ("kg", "of"), ("oz", "of"), ("litres", "of"), ("cups", "of"), ("tbsp", "of"),
         ("bags", "of"), ("bottles", "of"), ("packs", "of"), ("grams", "of"))
DISTANCES = ("km", "miles", "metres")
BACKCHANNELS = ("mm-hm", "right", "yeah", "okay", "I see", "uh-huh", "sure", "got it")
ACKNOWLEDGEMENTS = ("Thanks!", "Great, thank you.", "Perfect.", "Okay, got it.", "Thank you so much.",
                    "That's helpful.", "Cool, thanks.")
WELCOMES = ("You're welcome.", "Happy to help.", "Any time.", "No problem at all.",
            "Glad I could help.")


@dataclass
class Fact:
    """A fictional fact, the question it answers, and the short spoken answer."""

    statement: str  # "In Oakhaven the sky is purple."
    question: str  # "What colour is the sky in Oakhaven?"
    answer: str  # "It's purple."


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass
class Script:
    """A conversation to voice: turns in order, and the text context the assistant may read."""

    turns: list[Turn]
    context: str = ""  # retrieval context (documents the assistant was given); "" for chit-chat


class TextGenerator:
    def __init__(self, rng: random.Random, file_sentences: Sequence[str] = ()):
        self.rng = rng
        self.file_sentences = list(file_sentences)  # the user's own text (read_text_file), mixed in
        self._kinds = (
            (self.statement, 4), (self.question, 3), (self.quantity, 2), (self.date_or_time, 2),
            (self.abbreviation, 2), (lambda: self.facts(self.place(), 1)[0].statement, 1), (self.qa_line, 2),
        )

    # -- slots --------------------------------------------------------------------------------------
    def pick(self, options):
        return self.rng.choice(options)

    def name(self) -> str:
        return f"{self.pick(FIRST_NAMES)} {self.pick(LAST_NAMES)}"

    def place(self) -> str:
        return self.pick(PLACE_HEADS) + self.pick(PLACE_TAILS)

    def number(self, low: int = 2, high: int = 99) -> int:
        return self.rng.randint(low, high)

    def price(self) -> str:
        cents = self.pick(("00", "50", "99", "25", f"{self.rng.randint(10, 99)}"))
        return f"${self.rng.randint(1, 60)}.{cents}" if cents != "00" else f"${self.rng.randint(2, 900)}"

    def clock(self) -> str:
        minute = self.pick((0, 15, 30, 45, self.rng.randint(1, 59)))
        return f"{self.rng.randint(1, 12)}:{minute:02d} {self.pick(('a.m.', 'p.m.'))}"

    def date(self) -> str:
        day = self.rng.randint(1, 28)
        suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
        forms = (f"{self.pick(MONTHS)} {day}{suffix}", f"the {day}{suffix} of {self.pick(MONTHS)}",
                 f"{self.pick(WEEKDAYS)}, {self.pick(MONTHS)} {day}{suffix}",
                 f"{self.pick(MONTHS)} {day}{suffix}, {self.rng.randint(1990, 2030)}")
        return self.pick(forms)

    def amount(self) -> str:
        unit, linker = self.pick(UNITS)
        count = self.pick((str(self.rng.randint(2, 12)), f"{self.rng.randint(1, 5)}.5"))
        return f"{count} {unit} {linker} {self.pick(FOODS)}"

    # -- sentence kinds -----------------------------------------------------------------------------
    def sentence(self) -> str:
        """One utterance of any kind (or a line from the user's text files, when given)."""
        if self.file_sentences and self.rng.random() < 0.5:
            return self.pick(self.file_sentences)
        makers, weights = zip(*self._kinds)
        return _tidy(self.rng.choices(makers, weights=weights)[0]())

    def statement(self) -> str:
        templates = (
            lambda: f"I left my {self.pick(OBJECTS)} in the {self.pick(ROOMS)} this morning.",
            lambda: f"{self.pick(FIRST_NAMES)} wants to {self.pick(ACTIVITIES)} this weekend.",
            lambda: f"It was {self.pick(WEATHER)} in {self.pick(CITIES)} all day yesterday.",
            lambda: f"Our {self.pick(ANIMALS)} sleeps on the sofa whenever it rains.",
            lambda: f"We should {self.pick(ACTIVITIES)} before the end of {self.pick(MONTHS)}.",
            lambda: f"My sister moved to {self.pick(CITIES)} and loves it there.",
            lambda: f"The {self.pick(COLOURS)} car across the road has been parked there for a week.",
            lambda: f"I think {self.pick(DISHES)} would be perfect for dinner tonight.",
            lambda: f"{self.pick(FIRST_NAMES)} said the train to {self.pick(CITIES)} was late again.",
            lambda: f"Honestly, I never have time to {self.pick(ACTIVITIES)} during the week.",
            lambda: f"The kids finally cleaned the {self.pick(ROOMS)}, which is a small miracle.",
            lambda: f"Let's meet outside the station and walk to {self.pick(STREETS)} together.",
        )
        return self.pick(templates)()

    def question(self) -> str:
        templates = (
            lambda: f"What's the weather going to be like in {self.pick(CITIES)} tomorrow?",
            lambda: f"Can you remind me to {self.pick(ACTIVITIES)} on {self.pick(WEEKDAYS)}?",
            lambda: f"Have you seen my {self.pick(OBJECTS)} anywhere?",
            lambda: f"How long does it take to cook {self.pick(DISHES)}?",
            lambda: f"Do we still need {self.pick(FOODS)} from the shop?",
            lambda: f"Could you set a timer for {self.number(2, 45)} minutes?",
            lambda: f"Is it too late to call {self.pick(FIRST_NAMES)} now?",
            lambda: f"Why is the {self.pick(ANIMALS)} making that noise?",
            lambda: f"Where did you put the tickets for {self.pick(WEEKDAYS)}?",
            lambda: f"What time does the pharmacy on {self.pick(STREETS)} close?",
        )
        return self.pick(templates)()

    def quantity(self) -> str:
        templates = (
            lambda: f"Please add {self.amount()} to the shopping list.",
            lambda: f"The recipe needs {self.amount()} and {self.number(2, 6)} eggs.",
            lambda: f"The jacket was {self.price()}, but it's {self.number(10, 70)}% off this week.",
            lambda: f"We drove {self.number(20, 480)} {self.pick(DISTANCES)} in a single day.",
            lambda: f"The bill came to {self.price()} including the tip.",
            lambda: f"It's {self.number(2, 35)}°C outside and the wind is {self.number(5, 60)} mph.",
            lambda: f"There are {self.number(2, 12)},{self.number(100, 999)} people living in the village.",
            lambda: f"The box weighs {self.number(2, 40)}.{self.number(1, 9)} kg and is "
                    f"{self.number(20, 150)} cm wide.",
            lambda: f"Room {self.number(100, 999)} is on the "
                    f"{self.pick(('2nd', '3rd', '4th', '5th', '11th', '21st'))} floor.",
        )
        return self.pick(templates)()

    def date_or_time(self) -> str:
        templates = (
            lambda: f"The appointment is on {self.date()} at {self.clock()}.",
            lambda: f"My flight leaves at {self.clock()} on {self.pick(WEEKDAYS)}.",
            lambda: f"{self.pick(FIRST_NAMES)} was born on {self.date()}.",
            lambda: f"The shop opens at {self.clock()} and closes at {self.clock()}.",
            lambda: f"Rent is due on {self.date()}, so don't forget.",
            lambda: f"We moved here in {self.rng.randint(1985, 2024)} and never looked back.",
        )
        return self.pick(templates)()

    def abbreviation(self) -> str:
        title, last = self.pick(TITLES), self.pick(LAST_NAMES)
        templates = (
            lambda: f"Mr. and Mrs. {last} invited us over for dinner on {self.pick(WEEKDAYS)}.",
            lambda: f"{title} {last} will see you at {self.clock()}.",
            lambda: "Turn left on St. James Rd. and the office is on the right.",
            lambda: "Bring snacks, drinks, blankets, etc. for the picnic.",
            lambda: f"{title} {last} lives at {self.number(2, 300)} {self.pick(STREETS)}.",
            lambda: f"Some fruit, e.g. {self.pick(FRUITS)} or {self.pick(FRUITS)}, would be nice.",
            lambda: f"The meeting with {title} {last} moved to {self.date()}.",
            lambda: f"It's approx. {self.number(2, 30)} mins from here by bus.",
        )
        return self.pick(templates)()

    def qa_line(self) -> str:
        """A question and its answer spoken as one utterance."""
        exchange = self.pick(self._chat_pairs())()
        return f"{exchange[0]} {exchange[1]}"

    # -- retrieval ----------------------------------------------------------------------------------
    def facts(self, place: str, count: int) -> list[Fact]:
        """count facts about one place, each about a different thing (no two rivers)."""
        colour, name, bridges = self.pick(COLOURS), self.name(), self.number(2, 40)
        year = self.rng.randint(1700, 2020)
        fruit, time, river, street = self.pick(FRUITS), self.clock(), self.pick(RIVERS), self.pick(STREETS)
        other, minutes = self.place(), self.number(5, 90)
        facts = [
            Fact(f"In {place} the sky is {colour}.", f"What colour is the sky in {place}?",
                 f"It's {colour}."),
            Fact(f"The mayor of {place} is {name}.", f"Who is the mayor of {place}?",
                 f"The mayor is {name}."),
            Fact(f"The market in {place} opens at {time}.", f"When does the market in {place} open?",
                 f"It opens at {time}."),
            Fact(f"{place} has {bridges} bridges.", f"How many bridges does {place} have?",
                 f"It has {bridges} bridges."),
            Fact(f"The library in {place} was built in {year}.", f"When was the library in {place} built?",
                 f"It was built in {year}."),
            Fact(f"People in {place} grow {fruit} on every hill.", f"What do people grow in {place}?",
                 f"They grow {fruit}."),
            Fact(f"The river through {place} is called the {river}.", f"What is the river in {place} called?",
                 f"It's called the {river}."),
            Fact(f"The train from {place} to {other} takes {minutes} minutes.",
                 f"How long is the train from {place} to {other}?", f"It takes {minutes} minutes."),
            Fact(f"The town hall of {place} stands on {street}.", f"Where is the town hall in {place}?",
                 f"It's on {street}."),
        ]
        return [Fact(*map(_tidy, (f.statement, f.question, f.answer))) for f in self.rng.sample(facts, count)]

    def retrieval_script(self) -> Script:
        """Context of a few facts; the user asks about one (or two), the assistant answers from it."""
        facts = self.facts(self.place(), self.rng.randint(2, 4))
        asked = self.rng.sample(facts, k=min(len(facts), self.rng.choice((1, 1, 2))))
        turns: list[Turn] = []
        for fact in asked:
            turns += [Turn("user", fact.question), Turn("assistant", fact.answer)]
        if self.rng.random() < 0.5:
            turns += [Turn("user", self.pick(ACKNOWLEDGEMENTS)), Turn("assistant", self.pick(WELCOMES))]
        return Script(turns, context=" ".join(f.statement for f in facts))

    # -- chit-chat ----------------------------------------------------------------------------------
    def _chat_pairs(self):
        return (
            lambda: (f"What's the weather like in {self.pick(CITIES)} today?",
                     f"It's {self.pick(WEATHER)} and about {self.number(2, 30)} degrees, so take a jacket "
                     f"if you're going out later this evening."),
            lambda: (f"Can you add {self.amount()} to my list?",
                     f"Sure, I've added {self.amount()} to your shopping list. Anything else you need?"),
            lambda: (f"What time is my meeting with {self.pick(TITLES)} {self.pick(LAST_NAMES)}?",
                     f"Your meeting is at {self.clock()} on {self.pick(WEEKDAYS)}, in the small room "
                     f"on the {self.pick(('2nd', '3rd', '4th'))} floor."),
            lambda: ("Any ideas for dinner tonight?",
                     f"How about {self.pick(DISHES)}? It takes about {self.number(15, 50)} minutes and you "
                     f"probably have most of the ingredients already."),
            lambda: (f"How far is it from {self.pick(CITIES)} to {self.pick(CITIES)}?",
                     f"It's roughly {self.number(80, 900)} {self.pick(DISTANCES)}, which is a few hours by "
                     f"train or a long day in the car."),
            lambda: (f"Can you set an alarm for {self.clock()}?",
                     f"Done. Your alarm is set for {self.clock()} tomorrow, and I'll remind you again "
                     f"before you go to bed."),
            lambda: (f"Where did I leave my {self.pick(OBJECTS)}?",
                     f"Last time you mentioned it, it was in the {self.pick(ROOMS)}, next to the "
                     f"{self.pick(COLOURS)} bag."),
            lambda: (f"How much is {self.number(2, 60)}% of {self.number(20, 900)}?",
                     f"Let me work that out for you. It comes to about {self.number(2, 400)}."),
            lambda: (f"When is {self.pick(FIRST_NAMES)}'s birthday?",
                     f"It's on {self.date()}. Would you like me to remind you a week before?"),
        )

    def chat_script(self) -> Script:
        """Everyday exchange: one to three question/answer rounds, sometimes a thank-you."""
        turns: list[Turn] = []
        for _ in range(self.rng.randint(1, 3)):
            question, answer = self.pick(self._chat_pairs())()
            turns += [Turn("user", _tidy(question)), Turn("assistant", _tidy(answer))]
        if self.rng.random() < 0.4:
            turns += [Turn("user", self.pick(ACKNOWLEDGEMENTS)), Turn("assistant", self.pick(WELCOMES))]
        return Script(turns)

    def script(self, retrieval_share: float = 0.5) -> Script:
        return self.retrieval_script() if self.rng.random() < retrieval_share else self.chat_script()

    # -- text-only samples ----------------------------------------------------------------------------
    def passage(self) -> str:
        """A text-only training sample: a paragraph, a Q&A with context, or a written chat."""
        kind = self.rng.random()
        if kind < 0.4:
            return " ".join(self.sentence() for _ in range(self.rng.randint(3, 8)))
        if kind < 0.7:
            script = self.retrieval_script()
            lines = [f"Context: {script.context}"]
        else:
            script = self.chat_script()
            lines = []
        lines += [f"{turn.role.capitalize()}: {turn.text}" for turn in script.turns]
        return "\n".join(lines)


def _tidy(text: str) -> str:
    """"at 7:00 a.m.." -> "at 7:00 a.m.": an abbreviation's dot also ends the sentence."""
    return re.sub(r"\.\.(?!\.)", ".", text)


def read_text_file(path: str | Path, max_words: int = 40) -> list[str]:
    """A plain-text file -> sentences short enough to speak in one utterance (<= max_words)."""
    text = re.sub(r"\s+", " ", Path(path).read_text(encoding="utf-8", errors="replace"))
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'“])", text)
    return [s.strip() for s in sentences if 2 <= len(s.split()) <= max_words]
