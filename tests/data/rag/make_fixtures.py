"""Regenerates the binary documents of the RAG test corpus from the texts in `sources/`.

    python tests/data/rag/make_fixtures.py

`sources/NAME.txt` becomes `corpus/NAME.pdf` (pages split at form feeds), except the ones
listed in DOCX, which become `corpus/NAME.docx`. The PDFs are real text PDFs (Helvetica,
WinAnsi), written with pypdf's object model because no PDF library in the project lays out text.
"""

from __future__ import annotations

import textwrap
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

HERE = Path(__file__).parent
DOCX = {"houseplants"}
PAGE_WIDTH, PAGE_HEIGHT, MARGIN, LEADING = 595, 842, 56, 13  # A4 in points, 10 pt text


def write_pdf(pages: list[str], path: Path, title: str) -> None:
    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
        NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
    }))
    for page_text in pages:
        page = writer.add_blank_page(PAGE_WIDTH, PAGE_HEIGHT)
        page[NameObject("/Resources")] = DictionaryObject({
            NameObject("/Font"): DictionaryObject({NameObject("/F1"): font}),
        })
        lines = []
        for paragraph in page_text.strip().split("\n"):
            lines.extend(textwrap.wrap(paragraph, 95) or [""])
        operators = [f"BT /F1 10 Tf {LEADING} TL {MARGIN} {PAGE_HEIGHT - MARGIN} Td"]
        operators += [f"({_pdf_string(line)}) '" for line in lines]
        operators.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(operators).encode("cp1252"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    writer.add_metadata({"/Title": title})
    with open(path, "wb") as file:
        writer.write(file)


def _pdf_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_docx(paragraphs: list[str], path: Path, title: str) -> None:
    """The smallest .docx Word opens: content types, package relations, the document, core props."""
    namespace = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f"<w:p><w:r><w:t xml:space=\"preserve\">{escape(p)}</w:t></w:r></w:p>" for p in paragraphs)
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
            '<Override PartName="/docProps/core.xml" '
            'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/></Types>'
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships/officeDocument" Target="word/document.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/'
            'relationships/metadata/core-properties" Target="docProps/core.xml"/></Relationships>'
        ),
        "word/document.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{namespace}">'
            f"<w:body>{body}</w:body></w:document>"
        ),
        "docProps/core.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><cp:coreProperties '
            'xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
            f'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{escape(title)}</dc:title>'
            "</cp:coreProperties>"
        ),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, xml in parts.items():
            archive.writestr(name, xml)


def main() -> None:
    for source in sorted((HERE / "sources").glob("*.txt")):
        text = source.read_text(encoding="utf-8")
        title = text.strip().splitlines()[0].strip().title()
        if source.stem in DOCX:
            paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
            write_docx(paragraphs, HERE / "corpus" / f"{source.stem}.docx", title)
        else:
            write_pdf(text.split("\f"), HERE / "corpus" / f"{source.stem}.pdf", title)


if __name__ == "__main__":
    main()
