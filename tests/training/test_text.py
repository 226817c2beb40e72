"""Text generation and spoken-form normalization."""

import random
import re

from training.data.normalize import comparison_words, normalize, speakable
from training.data.textgen import TextGenerator, read_text_file


def _sentences(seed: int, count: int) -> list[str]:
    generator = TextGenerator(random.Random(seed))
    return [generator.sentence() for _ in range(count)]


def test_generator_is_seeded():
    assert _sentences(3, 50) == _sentences(3, 50), "same seed must give the same texts (resume relies on it)"
    assert _sentences(3, 50) != _sentences(4, 50)


def test_generator_covers_the_kinds_the_issue_asks_for():
    texts = _sentences(0, 400)
    joined = "\n".join(texts)
    assert len(set(texts)) > 250, "texts should be varied"
    assert sum(t.endswith("?") or "? " in t for t in texts) > 20, "questions"
    assert re.search(r"\$\d", joined) and re.search(r"\d+%", joined), "prices and percentages"
    assert re.search(r"\b(January|February|March|April|May|June|July|August|September|October|November|"
                     r"December) \d{1,2}(st|nd|rd|th)", joined), "dates"
    assert re.search(r"\d+(\.\d)? (lbs|kg|oz|tbsp) of", joined), "quantities with units"
    assert re.search(r"\b(Mr|Mrs|Dr|Ms|Prof)\. [A-Z]", joined) and "etc." in joined, "abbreviations"
    assert re.search(r"\d{1,2}:\d{2} [ap]\.m\.", joined), "clock times"


def test_retrieval_answers_come_from_the_context():
    generator = TextGenerator(random.Random(1))
    for _ in range(30):
        script = generator.retrieval_script()
        questions = [t.text for t in script.turns if t.role == "user" and t.text.endswith("?")]
        answers = [t.text for t in script.turns if t.role == "assistant"][: len(questions)]
        assert questions, "a retrieval exchange asks something"
        for answer in answers:
            # the answer's last word ("purple", "Ledder", "a.m") and its numbers are stated in the context
            last = answer.split()[-1]
            for key in [last[:-1] if last.endswith(".") else last, *re.findall(r"\d+", answer)]:
                assert key in script.context, f"answer {answer!r} not grounded in {script.context!r}"


def test_spoken_form_makes_written_and_heard_text_compare_equal():
    assert normalize("Mr. and Mrs. Miller bought 2 lbs of flour.") == \
        "mister and missus miller bought two pounds of flour"
    assert normalize("It's $3.50, 20% off") == "it's three dollars fifty cents twenty percent off"
    assert normalize("on March 3rd, 2021") == "on march third two thousand twenty one"
    # ASR writes times and amounts its own way; both sides must meet in the middle
    assert normalize("at 7:30 a.m.") == normalize("at 7.30am") == "at seven thirty a m"
    assert normalize("The colour is grey") == normalize("the color is gray")
    assert comparison_words("mayor's") == ["mayor", "is"] and comparison_words("won't") == ["will", "not"]
    assert normalize("mm-hm") == "mm hm", "a hum is not millimetres"


def test_speakable_keeps_a_word_map_for_the_synthesizer():
    text = "Mr. Smith paid $3.50 — on the 21st."
    spoken, counts = speakable(text)
    assert spoken == "mister smith paid three dollars fifty cents, on the twenty first."
    assert len(counts) == len(text.split()) and sum(counts) == len(spoken.split())


def test_text_files_are_split_into_speakable_sentences(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("The ferry leaves at noon.\nBring a coat!  Is it far? Yes.\n\n" + "word " * 60 + ".")
    assert read_text_file(path) == ["The ferry leaves at noon.", "Bring a coat!", "Is it far?"]
