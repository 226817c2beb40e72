"""Text extraction per format: what ends up indexed, its title, its pages, its encoding notes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from michi_core.stores.rag.extract import ExtractionError, extract, normalize

CORPUS = Path(__file__).resolve().parents[2] / "data" / "rag" / "corpus"


def test_utf8_text_with_and_without_bom():
    for data in ("Crème brûlée at 180 °C.".encode(), "\ufeffCrème brûlée at 180 °C.".encode()):
        result = extract(Path("notes.txt"), data)
        assert result.text == "Crème brûlée at 180 °C."
        assert result.notes == [] and result.page_count is None


def test_utf16_with_bom():
    assert extract(Path("notes.txt"), "Grüße aus Köln".encode("utf-16")).text == "Grüße aus Köln"


def test_legacy_latin1_text_is_read_with_a_note():
    result = extract(Path("old.txt"), "Café au lait, déjà vu, naïve".encode("latin-1"))
    assert result.text == "Café au lait, déjà vu, naïve"
    assert "not UTF-8" in result.notes[0]


def test_text_in_no_known_encoding_is_refused():
    with pytest.raises(ExtractionError, match="not valid UTF-8 .* offset 6"):
        extract(Path("odd.txt"), b"plain \x81\x8d text")


def test_binary_with_text_extension_is_refused():
    png_header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    with pytest.raises(ExtractionError, match="binary"):
        extract(Path("photo.txt"), png_header)


@pytest.mark.parametrize("data", [b"", b"   \n\n\t  "])
def test_empty_or_blank_files_are_refused(data):
    with pytest.raises(ExtractionError, match="empty|no text"):
        extract(Path("empty.md"), data)


def test_markdown_title_is_its_first_heading():
    result = extract(CORPUS / "bike_share.md", (CORPUS / "bike_share.md").read_bytes())
    assert result.title == "Lindenport Bike Share: Rider Rules"
    assert "A day pass costs 6 euros" in result.text


def test_html_keeps_visible_text_only():
    path = CORPUS / "lighthouse.html"
    result = extract(path, path.read_bytes())
    assert result.title == "The Skerryvane Lighthouse: a short history"
    assert "emigrant ship Margaret Ellison in 1838" in result.text, "inline tags must not break sentences"
    assert "console.log" not in result.text and "font-family" not in result.text, "scripts and styles dropped"
    assert "\n\nConstruction\n\n" in result.text, "block elements become paragraph breaks"


def test_html_declared_charset_and_entities():
    html = '<html><head><meta charset="iso-8859-1"><title>T</title></head><body><p>Fish &amp; chips, ' \
           "caf\xe9</p></body></html>"
    assert extract(Path("page.htm"), html.encode("latin-1")).text == "Fish & chips, café"


def test_docx_paragraphs_and_title():
    path = CORPUS / "houseplants.docx"
    result = extract(path, path.read_bytes())
    assert result.title == "Caring For Common Houseplants"
    assert "Monstera deliciosa. The Swiss cheese plant" in result.text
    assert result.text.count("\n\n") >= 8, "paragraphs stay apart"


def test_docx_that_is_not_a_zip_or_lacks_its_document():
    with pytest.raises(ExtractionError, match="not a valid .docx"):
        extract(Path("report.docx"), b"PK\x03\x04 this is not really a zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ExtractionError, match="not a valid .docx"):
        extract(Path("report.docx"), buffer.getvalue())


def test_pdf_pages_and_title():
    path = CORPUS / "travel_policy.pdf"
    result = extract(path, path.read_bytes())
    assert result.title == "Company Travel Policy"
    assert result.page_count == 3
    page_two = result.text[result.page_starts[1] : result.page_starts[2]]
    assert page_two.startswith("4. Rail travel") and "nightly caps" in page_two


def test_unsupported_type():
    with pytest.raises(ExtractionError, match="unsupported file type '.xlsx'"):
        extract(Path("budget.xlsx"), b"PK...")


def test_normalize_whitespace():
    assert normalize("a\r\nb  \t c\x00\n\n\n\n d \n") == "a\nb c\n\nd"
