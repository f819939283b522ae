"""PDF text extraction for models without file input (routing.plugins.file_parser)."""

from __future__ import annotations

import base64
import io

import pytest
from pypdf import PdfReader, PdfWriter

from openrouter_site.errors import BadRequest
from routing.plugins.file_parser import has_file_parts, parse_files, pdf_text, requested_engine


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF: one Helvetica text line per page, with a correct xref table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(len(pages)))}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def encrypted(data: bytes, *, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password, owner_password="owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def data_url(data: bytes, mime: str = "application/pdf") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def file_message(data: bytes | str, filename: str | None = "report.pdf", text: str = "Summarise this") -> dict:
    file = {"file_data": data if isinstance(data, str) else data_url(data)}
    if filename is not None:
        file["filename"] = filename
    return {"role": "user", "content": [{"type": "text", "text": text}, {"type": "file", "file": file}]}


REPORT = make_pdf(["Quarterly report: revenue grew 12%", "Page two (appendix) lists 3 risks"])


def test_the_generator_makes_a_real_pdf():
    assert [p.extract_text() for p in PdfReader(io.BytesIO(REPORT)).pages] == [
        "Quarterly report: revenue grew 12%",
        "Page two (appendix) lists 3 risks",
    ]


def test_a_pdf_becomes_a_text_part_for_a_model_without_file_input():
    messages = [{"role": "system", "content": "sys"}, file_message(REPORT)]
    result = parse_files(messages, engine=None, model_supports_files=False)
    assert result.files_parsed == 1 and result.pages == 2 and result.notes == ()
    assert result.messages[0] is messages[0]
    assert result.messages[1]["content"] == [
        {"type": "text", "text": "Summarise this"},
        {"type": "text", "text": "report.pdf:\nQuarterly report: revenue grew 12%\n\nPage two (appendix) lists 3 risks"},
    ]
    assert messages[1]["content"][1]["type"] == "file"  # the request itself is not modified


@pytest.mark.parametrize("engine", ["cloudflare-ai", "pdf-text"])
def test_the_free_engines_parse_locally_even_for_file_capable_models(engine):
    result = parse_files([file_message(REPORT)], engine=engine, model_supports_files=True)
    assert result.files_parsed == 1
    assert result.messages[0]["content"][1]["text"].startswith("report.pdf:\nQuarterly report")


def test_native_leaves_the_file_for_a_model_that_reads_files():
    messages = [file_message(REPORT)]
    for engine in (None, "native"):
        result = parse_files(messages, engine=engine, model_supports_files=True)
        assert result.messages == messages and result.files_parsed == 0


def test_native_for_a_model_without_file_input_parses_locally_with_a_note():
    result = parse_files([file_message(REPORT)], engine="native", model_supports_files=False)
    assert result.files_parsed == 1
    assert "does not accept files natively" in result.notes[0]


def test_mistral_ocr_falls_back_to_the_local_engine_with_a_note():
    result = parse_files([file_message(REPORT)], engine="mistral-ocr", model_supports_files=False)
    assert result.files_parsed == 1
    assert result.notes == ("mistral-ocr is not available on this gateway; PDFs were parsed with the free local text engine",)


def test_a_pdf_with_no_text_layer_yields_a_note():
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    result = parse_files([file_message(out.getvalue(), filename="scan.pdf")], engine=None, model_supports_files=False)
    assert result.messages[0]["content"][1] == {"type": "text", "text": "scan.pdf:\n"}
    assert "no text layer" in result.notes[0]


def test_a_missing_filename_gets_a_default():
    result = parse_files([file_message(REPORT, filename=None)], engine=None, model_supports_files=False)
    assert result.messages[0]["content"][1]["text"].startswith("document.pdf:\n")


def test_an_encrypted_pdf_with_an_empty_user_password_is_read():
    data = encrypted(REPORT, user_password="")
    assert pdf_text(data)[0].startswith("Quarterly report")


@pytest.mark.parametrize(
    ("file_data", "message"),
    [
        (encrypted(REPORT, user_password="secret"), "File 'report.pdf' is an encrypted PDF; send it without a password"),
        (REPORT[: len(REPORT) // 3], "File 'report.pdf' could not be read as a PDF"),
        (b"%PDF-1.4\nthis is not a pdf at all\n%%EOF", "File 'report.pdf' could not be read as a PDF"),
        (b"just some text", "File 'report.pdf' is not a PDF"),
        (data_url(b"hello", "text/plain"), "File 'report.pdf' is text/plain; the file parser reads PDFs only"),
        ("data:application/pdf;base64,@@@not-base64@@@", "File 'report.pdf' is not valid base64"),
        ("data:application/pdf,%25PDF-1.4", "File 'report.pdf' must be base64-encoded"),
        ("https://example.com/report.pdf", "File 'report.pdf': only base64 data URLs"),
        ("", "File 'report.pdf' has no file_data"),
    ],
)
def test_unreadable_files_are_a_clear_400(file_data, message):
    with pytest.raises(BadRequest) as caught:
        parse_files([file_message(file_data)], engine=None, model_supports_files=False)
    assert caught.value.status == 400
    assert caught.value.message.startswith(message)


def test_requested_engine_reads_the_plugin():
    assert requested_engine(None) is None
    assert requested_engine([{"id": "file-parser", "pdf": {"engine": "pdf-text"}}]) == "pdf-text"
    assert requested_engine([{"id": "file-parser", "enabled": False, "pdf": {"engine": "pdf-text"}}]) is None
    assert requested_engine([{"id": "web"}]) is None
    with pytest.raises(BadRequest, match="must be one of"):
        requested_engine([{"id": "file-parser", "pdf": {"engine": "tesseract"}}])
    with pytest.raises(BadRequest):
        requested_engine([{"id": "file-parser", "pdf": "mistral-ocr"}])


def test_has_file_parts():
    assert has_file_parts([file_message(REPORT)])
    assert not has_file_parts([{"role": "user", "content": "hi"}])
    assert not has_file_parts(None)
